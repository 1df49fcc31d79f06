"""Datasets: the record schema, dataset directories, tf.data pipelines, importers (transforms.json,
photos) and the built-in synthetic classes."""
