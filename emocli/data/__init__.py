"""Feature store -> tensors: which feature sets feed a model (inputs), the labelled samples in memory
(tables), train / valid / test row positions (splits), per-feature standardisation (normalize), and the
collator that turns rows into padded batches (batches). Training, evaluation and prediction all read
their inputs through here."""
