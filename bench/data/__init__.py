"""Data sources: COCO-format annotations, the official POPE question files, Hugging Face datasets,
and image loading. Every problem with the data is a one-line `DataError` naming the file and field."""
