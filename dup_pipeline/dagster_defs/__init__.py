"""The thin Dagster layer: assets, partitions, resources and definitions over the pure core."""
