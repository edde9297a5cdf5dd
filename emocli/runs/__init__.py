"""A trained run as data: its directory layout, the configuration it stores, the one way to load and score
a unit (inference), evaluation on a split, results over units, the model card and the metrics."""
