"""An utterance's dialogue context, as the text extractors read it.

The context of a sample is the utterances next to it in its dialogue: rows of the sample table with the
same `dialogue_id`, ordered by `position`. It never crosses dialogues: a sample without a dialogue_id has
none, and a dialogue's first utterance has no previous one. With speaker tags each utterance is read as
"Speaker: text" (the sample's `speaker`; the bare text where it has none).

Two ways to encode it (the `mode` parameter of the extractors): "dialogue" joins the context and the
utterance into one sequence (hf-text only); "concat" encodes each utterance of a fixed window alone and
concatenates the vectors [previous…, current, following…], with zero vectors where the window reaches past
the dialogue's edge or holds an utterance without text. `prepare` stores the window's texts in
WINDOW_COLUMN, and the input fingerprint is their hash, so a change of context is a change of input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emocli.core.errors import ExtractionError
from emocli.core.io import text_fingerprint

if TYPE_CHECKING:
    import pandas as pd

# Column `prepare` adds in "concat" mode: the window's texts as read, None where there is no utterance.
WINDOW_COLUMN = "text_window"


@dataclass(frozen=True)
class Context:
    """A sample's neighbours in its dialogue, as read (speaker-tagged if asked); None: no text."""

    before: tuple[str | None, ...]  # the previous utterances, farthest first
    current: str | None
    after: tuple[str | None, ...]  # the following utterances, nearest first


def utterance_text(text: Any, speaker: Any, speaker_tags: bool) -> str | None:
    """The text an encoder reads for one utterance: None without text, "Speaker: text" with tags."""
    import pandas as pd

    if text is None or pd.isna(text):
        return None
    if speaker_tags and speaker is not None and not pd.isna(speaker) and str(speaker).strip():
        return f"{str(speaker).strip()}: {text}"
    return str(text)


def dialogue_contexts(samples: pd.DataFrame, before: int | None, after: int, speaker_tags: bool) -> list[Context]:
    """One Context per row of `samples`, in row order: up to `before` previous (None: all) and `after`
    following utterances of the same dialogue, fewer at its edges."""
    speakers = samples["speaker"] if "speaker" in samples else [None] * len(samples)
    texts = [utterance_text(t, s, speaker_tags) for t, s in zip(samples["text"], speakers)]
    contexts = [Context((), text, ()) for text in texts]
    rows = samples.reset_index(drop=True)
    in_dialogue = rows[rows["dialogue_id"].notna()]
    ordered = in_dialogue.sort_values(["dialogue_id", "position"], kind="stable", na_position="last")
    for _, dialogue in ordered.groupby("dialogue_id", sort=False):
        members = list(dialogue.index)
        for i, row in enumerate(members):
            first = 0 if before is None else max(i - before, 0)
            contexts[row] = Context(
                tuple(texts[r] for r in members[first:i]),
                texts[row],
                tuple(texts[r] for r in members[i + 1 : i + 1 + after]),
            )
    return contexts


def padded_window(context: Context, before: int, after: int) -> list[str | None]:
    """[previous…, current, following…] of fixed length before + 1 + after, None past the dialogue's edges."""
    return [None] * (before - len(context.before)) + [*context.before, context.current, *context.after] + [
        None
    ] * (after - len(context.after))


def with_windows(samples: pd.DataFrame, before: int, after: int, speaker_tags: bool) -> pd.DataFrame:
    """`samples` plus WINDOW_COLUMN (row order and index kept)."""
    contexts = dialogue_contexts(samples, before, after, speaker_tags)
    samples = samples.copy()
    samples[WINDOW_COLUMN] = [padded_window(context, before, after) for context in contexts]
    return samples


def sample_window(sample: Mapping[str, Any], before: int) -> list[str | None]:
    """The window `with_windows` stored for a sample; ExtractionError when it was not prepared or the
    sample itself has no text."""
    window = sample.get(WINDOW_COLUMN)
    if window is None:
        raise ExtractionError(
            f"concat mode needs the context built by prepare() (column {WINDOW_COLUMN!r} is missing)",
            row=sample.get("sample_id"),
        )
    if window[before] is None:
        raise ExtractionError("sample has no text", row=sample.get("sample_id"))
    return list(window)


def window_fingerprint(window: list[str | None]) -> str:
    return text_fingerprint(json.dumps(window, ensure_ascii=False))
