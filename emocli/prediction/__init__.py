"""Raw media to emotions with a trained run: what `emo predict` calls.

    predictor = Predictor("runs/cfnsr-ravdess-a")          # a unit seed=S/fold=K, or a run root
    result = predictor.predict(["clip.mp4", "clips/"], window_s=4.0)
    result.table            # one row per input segment: input, segment, start_s, end_s, text, label(s), flags, prob_*
    result.failures         # inputs (or segments) that could not be predicted, and why
    result.notes            # inputs predicted, but not quite as asked (a damaged subtitle file: windows instead)
    write_predictions(result, "out.csv"); plot_timeline(result, "timeline.png")

The run's `feature_spec.json` says which extractors made its features (names, parameters, library
versions). The predictor rebuilds exactly those, once, and extracts in memory through the same runner as
the feature store (`extract_samples`); the model input is built by the training data module's collator
and the probabilities by the run's train step, so an input gets the numbers evaluation would give it.

Inputs and what is read from them:
* a video: its frames, and its own audio track (a manifest's `audio` column can name another file);
* an audio file;
* text: a transcript next to the media with the same stem (`clip.srt`, `clip.vtt`, `clip.txt`), or
  `text=` for every media input; a `.txt` input is one utterance per non-empty line, an `.srt`/`.vtt`
  input one per cue; with no media inputs, `text=` is itself the input;
* a folder: every media file in it, recursively (transcripts in it are sidecars, not inputs);
* a manifest (CSV/TSV/JSONL, emocli.datasets.manifest): one sample per row, as given.

Flags: a segment whose inputs had no face or no sound is still predicted (a model always answers), and
its `flags` say so ("visual:no_face", "audio:silent", ...), so that the answer is not taken for one.

Segments: subtitle cues when there are any (each cue is a segment with its text); otherwise fixed
windows (emocli.prediction.segments.windows); an untimed transcript makes the whole medium one segment, because
its text cannot be split between windows. Conversation models (input_unit "dialogue") read the
segments of one input as one dialogue, in time order; utterance models read each segment alone.
"""
