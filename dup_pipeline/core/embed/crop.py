"""fastdup's ``bounding_box``: crop a fixed box of every image before embedding.

A box partly outside an image is clipped to it; an image the box misses entirely is a bad file
(``bounding_box_outside``) and is not embedded.
"""

from dataclasses import dataclass

from PIL import Image

from dup_pipeline.core.decode import BadFile, DecodedImage
from dup_pipeline.core.errors import ConfigError

KEY_ALIASES = {
    "row_y": "row_y", "rows": "row_y", "row": "row_y", "y": "row_y",
    "col_x": "col_x", "cols": "col_x", "col": "col_x", "x": "col_x",
    "height": "height", "h": "height",
    "width": "width", "w": "width",
}


@dataclass(frozen=True)
class CropBox:
    """A box in original-image pixels: top row, left column, height and width."""

    row_y: int
    col_x: int
    height: int
    width: int

    @classmethod
    def parse(cls, text: str) -> "CropBox":
        """Parse ``row_y=10,col_x=20,height=100,width=50`` (also ``rows=``/``cols=``/``y=``/``x=``)."""
        values: dict[str, int] = {}
        for part in (p for p in text.replace(" ", "").split(",") if p):
            key, _, value = part.partition("=")
            if key not in KEY_ALIASES or not value.lstrip("-").isdigit():
                raise ConfigError(
                    "bounding_box must look like 'row_y=10,col_x=20,height=100,width=50' "
                    f"(keys: row_y|rows, col_x|cols, height, width), got {text!r}"
                )
            values[KEY_ALIASES[key]] = int(value)
        missing = {"row_y", "col_x", "height", "width"} - set(values)
        if missing:
            raise ConfigError(f"bounding_box {text!r} lacks {sorted(missing)}")
        if values["height"] < 1 or values["width"] < 1 or values["row_y"] < 0 or values["col_x"] < 0:
            raise ConfigError(f"bounding_box {text!r} needs row_y, col_x >= 0 and height, width >= 1")
        return cls(**values)

    def miss(self, width: int, height: int) -> BadFile | None:
        """Why an image of ``width`` x ``height`` original pixels cannot be cropped (the box lies
        wholly outside it), or None when the box overlaps it."""
        if self.col_x < width and self.row_y < height:
            return None
        return BadFile("bounding_box_outside", f"bounding_box {self.describe()} lies outside the "
                                               f"{width}x{height} image")

    def describe(self) -> str:
        return f"row_y={self.row_y},col_x={self.col_x},height={self.height},width={self.width}"

    def apply(self, decoded: DecodedImage) -> Image.Image | None:
        """Crop the (possibly reduced) decoded image, scaling the box and clipping it to the image;
        None when the box lies wholly outside the image."""
        if self.miss(decoded.width, decoded.height) is not None:
            return None
        img = decoded.image
        sx, sy = img.width / decoded.width, img.height / decoded.height
        left = min(int(self.col_x * sx), img.width - 1)
        top = min(int(self.row_y * sy), img.height - 1)
        right = max(left + 1, min(img.width, round((self.col_x + self.width) * sx)))
        bottom = max(top + 1, min(img.height, round((self.row_y + self.height) * sy)))
        return img.crop((left, top, right, bottom))
