"""Diagnostic wording: did-you-mean suggestions, and pydantic validation errors rewritten in the
spec's own words ("kernel_size must be a positive integer or a list of them")."""
from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel

from ..layers.base import FLOAT_LIMIT, MAX_SIZE

# Spellings users bring from PyTorch/Keras/Caffe, mapped to our type names for did-you-mean.
SYNONYMS = {
    "linear": "dense", "fc": "dense", "fullyconnected": "dense", "innerproduct": "dense",
    "convolution": "conv", "conv": "conv", "batchnorm": "batch_norm", "bn": "batch_norm",
    "batchnormalization": "batch_norm", "maxpool": "max_pool", "maxpooling": "max_pool",
    "avgpool": "avg_pool", "averagepooling": "avg_pool", "lrn": "local_response_norm",
    "convtranspose": "conv_transpose", "deconv": "conv_transpose", "deconvolution":
    "conv_transpose", "conv2dtranspose": "conv_transpose", "globalaveragepooling":
    "global_avg_pool", "globalavgpool": "global_avg_pool", "globalmaxpooling": "global_max_pool",
    "upsampling": "upsample", "concatenate": "concat", "cat": "concat", "sum": "add",
    "mul": "multiply", "logsoftmax": "log_softmax", "leakyrelu": "leaky_relu",
    "separableconv": "separable_conv", "depthwiseconv": "depthwise_conv", "residualblock":
    "residual", "skip": "residual", "flattening": "flatten", "adaptiveavgpool": "adaptive_avg_pool",
    "adaptivemaxpool": "adaptive_max_pool", "localresponsenorm": "local_response_norm",
    "attention": "multi_head_attention", "selfattention": "multi_head_attention",
    "mha": "multi_head_attention", "crossattention": "multi_head_attention",
    "droppath": "stochastic_depth", "zeropad": "pad", "zeropadding": "pad",
    "constantpad": "pad", "reflectionpad": "pad", "replicationpad": "pad",
    "circularpad": "pad", "depthtospace": "pixel_shuffle", "spacetodepth": "pixel_unshuffle",
    "narrow": "slice", "select": "index", "movedim": "permute", "view": "reshape",
    "crop": "slice", "cropping": "slice",  # Keras' Cropping2D: a slice per cropped axis
}


# Layers of other frameworks that archspec does not have: naming one gets "not a layer type of
# archspec", not a did-you-mean that points at a different layer (layer_norm is no batch_norm).
FOREIGN_LAYERS = {
    "rmsnorm", "localresponsenormalization",
    "rnn", "convlstm", "lstmcell", "grucell", "rnncell", "bidirectional",
    "transformer", "transformerencoder", "transformerdecoder", "transformerdecoderlayer", "positionalencoding", "positionalembedding",
    "embeddingbag", "selu", "celu", "softsign", "hardtanh", "logsigmoid", "softmin", "glu", "rrelu",
    "tanhshrink", "threshold", "bilinear", "unflatten",
    "fold", "unfold", "lambda", "alphadropout", "gaussiannoise",
}


def is_foreign_layer(word: str) -> bool:
    return canonical_type_name(word) in FOREIGN_LAYERS


def canonical_type_name(text: str) -> str:
    """`MaxPool2d`, `max_pool` and `Max-Pool 2D` all read as `maxpool`."""
    text = re.sub(r"[_\-\s]", "", text.lower())
    return re.sub(r"([123]d)$", "", text)


def suggest(word: str, choices: list[str], synonyms: dict[str, str] | None = None) -> str | None:
    """Best did-you-mean for a typo, PyTorch/Keras spelling or case slip; None if nothing close."""
    canon = canonical_type_name(word)
    by_canon = {canonical_type_name(c): c for c in choices}
    if canon in by_canon:
        return by_canon[canon]
    if synonyms and canon in synonyms and synonyms[canon] in choices:
        return synonyms[canon]
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6) or \
        difflib.get_close_matches(canon, list(by_canon), n=1, cutoff=0.6)
    if close:
        return by_canon.get(close[0], close[0])
    return None


def did_you_mean(word: str, choices, synonyms=None) -> str | None:
    best = suggest(word, list(choices), synonyms)
    return f"did you mean '{best}'?" if best else None


# ---- validation errors in the spec's own words ------------------------------------------------

def group_errors(config_cls, errors: list[dict]) -> list[list[dict]]:
    """Group pydantic errors by problem: a value failing every member of a union is one problem,
    the required fields missing from one mapping are one problem, and a required field reported
    missing because its name was misspelt is left to the unknown-field error, which suggests
    the right name."""
    misspelt = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = tuple(err["loc"])
            model, start = locate(config_cls, loc)
            fields = [f.alias or n for n, f in model.model_fields.items()]
            misspelt.add(loc[:start] + (suggest(str(loc[-1]), fields),))
    groups: dict[tuple, list[dict]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        model, start = locate(config_cls, loc)
        if err["type"] == "missing":
            if loc in misspelt:
                continue
            key = ("missing", loc[:start])
        elif err["type"] == "extra_forbidden":
            key = ("extra", loc)
        else:
            key = ("value", loc[:start + 1])
        groups.setdefault(key, []).append(err)
    return list(groups.values())


def field_info(model, name: Any):
    for key, info in model.model_fields.items():
        if name in (key, info.alias):
            return info
    return None


def _nested_model(annotation) -> tuple[Any, int]:
    """(model, loc parts to skip) when a field holds a model, a dict or a list of models."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, 0
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (dict, list) and args and isinstance(args[-1], type) \
            and issubclass(args[-1], BaseModel):
        return args[-1], 1
    return None, 0


def locate(config_cls, loc: tuple) -> tuple[Any, int]:
    """The innermost model an error is about, and where its field name sits in the loc."""
    model, start = config_cls, 0
    while start < len(loc):
        info = field_info(model, loc[start])
        inner, skip = _nested_model(info.annotation) if info is not None else (None, 0)
        if inner is None or start + 1 + skip > len(loc):
            break
        model, start = inner, start + 1 + skip
    return model, start


def existing_path(data: Any, loc) -> tuple:
    """The parts of a pydantic loc that exist in the data (union member tags are skipped)."""
    sub = ()
    for part in loc:
        if isinstance(data, dict) and part in data or \
                isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            sub += (part,)
            data = data[part]
    return sub


def value_at(data: Any, loc) -> Any:
    for part in existing_path(data, loc):
        data = data[part]
    return data


def show_value(value: Any) -> str:
    """A short YAML-like rendering of a user's value for a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 40 else f"a {len(text)}-digit number"
    if isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value):
        text = "[" + ", ".join(show_value(v) for v in value[:9]) + (", ...]" if len(value) > 9 else "]")
        if len(text) <= 60:
            return text
    if isinstance(value, (list, dict)):
        n = len(value)
        what = "list" if isinstance(value, list) else "mapping"
        return f"an empty {what}" if not n else f"a {what} of {n} item{'s' if n != 1 else ''}"
    return type(value).__name__


_NOUNS = {"integer": "integers", "number": "numbers", "string": "strings", "name": "names",
          "mapping": "mappings", "list": "lists", "value": "values", "layer": "layers"}


def _plural(text: str) -> str:
    """'a positive integer' -> 'positive integers' (descriptions from describe_type)."""
    if " or " in text:  # 'a positive integer or a name' -> 'positive integers or names'
        return " or ".join(_plural(part) for part in text.split(" or "))
    text = re.sub(r"^an? ", "", text)
    words = text.split(" ")
    for i, word in enumerate(words):
        if word in _NOUNS:
            words[i] = _NOUNS[word]
            return " ".join(words)
    return f"values that are {text}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return (", or " if " or " in parts[0] else " or ").join(parts)
    return ", ".join(parts[:-1]) + ", or " + parts[-1]


def _bounds(metadata) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for m in metadata or ():
        for key in ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern"):
            if getattr(m, key, None) is not None:
                found[key] = getattr(m, key)
    return found


def _number_text(noun: str, b: dict[str, Any]) -> str:
    low = b.get("ge", b["gt"] + (1 if noun == "integer" else 0) if "gt" in b else None)
    high = b.get("le")
    if high in (MAX_SIZE, FLOAT_LIMIT):  # the shared limits are named when a value passes them
        high = None
        low = None if low == -FLOAT_LIMIT else low
    if noun == "integer" and low == 1 and high is None:
        return "a positive integer"
    if "gt" in b and b["gt"] == 0 and high is None:  # before low: a float's low is gt itself
        return f"a positive {noun}"
    if low == 0 and high is None:
        return f"a non-negative {noun}"
    article = "an" if noun == "integer" else "a"
    if low is not None and high is not None:
        return f"{article} {noun} from {low} to {high}"
    if high is not None:
        return f"{article} {noun} up to {high}"
    return f"{article} {noun}" + (f" of at least {low}" if low is not None else "")


def describe_type(annotation: Any, metadata=()) -> str:
    """Plain words for a field's type: 'a positive integer or a list of them'."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type(args[0], list(metadata) + list(annotation.__metadata__))
    b = _bounds(metadata)
    if origin in (typing.Union, types.UnionType):
        parts: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            text = describe_type(arg, metadata)
            item = typing.get_args(arg)[0] if typing.get_origin(arg) is list else None
            if item is not None and describe_type(item) in parts:
                text = "a list of them"
            parts.append(text)
        return _join(parts)
    if origin is typing.Literal:
        shown = [show_value(a) for a in args]
        return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)
    if origin is list:
        inner = _plural(describe_type(args[0])) if args and args[0] is not Any else "values"
        lo, hi = b.get("min_length"), b.get("max_length")
        if lo and hi:
            return f"a list of {lo} to {hi} {inner}"
        return f"a {'non-empty ' if lo else ''}list of {inner}" if inner != "values" else \
            f"a {'non-empty ' if lo else ''}list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return _number_text("integer", b)
    if annotation is float:
        return _number_text("number", b)
    if annotation is str:
        if b.get("pattern") == r"^[A-Za-z0-9_]+$":
            return "a string of letters, digits and '_'"
        if b.get("pattern") == r"^[A-Za-z_][A-Za-z0-9_]*$":
            return "a name"
        return "a string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    return "a value"


def describe_field(info) -> str:
    nested = (info.json_schema_extra or {}).get("archspec_nested") \
        if isinstance(info.json_schema_extra, dict) else None
    if nested == "layers":
        return "a list of layers"
    if nested == "branches":
        return "a list of branches, each a list of layers"
    if info.alias == "from":
        return "a layer name or a list of layer names"
    text = describe_type(info.annotation, info.metadata)
    args = typing.get_args(info.annotation)
    if type(None) in args and info.default is not None and not info.is_required():
        text += " or null"
    return text


def _literals(annotation: Any) -> list[str]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return [a for a in args if isinstance(a, str)]
    return [lit for a in args for lit in _literals(a)]


def _accepts(annotation: Any, wanted: type) -> bool:
    if annotation is wanted:
        return True
    return any(_accepts(a, wanted) for a in typing.get_args(annotation))


def _example(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated or origin in (typing.Union, types.UnionType):
        return _example(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return str(args[0])
    if origin is list:
        return f"[{_example(args[0])}, {_example(args[0])}]" if args and args[0] is not Any \
            else "[...]"
    return {bool: "true", int: "3", float: "0.5", str: "name"}.get(annotation, "...")


def beyond_limit(name: str, value: Any) -> tuple[str, str] | None:
    """(message, hint) for a number past the shared limits of every layer field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and value > MAX_SIZE:
        return (f"{name} is too large: {show_value(value)} is more than {MAX_SIZE:,}",
                "sizes, strides, paddings and counts above a billion cannot be meant (and "
                "PyTorch's 64-bit sizes overflow); check for a typo")
    if isinstance(value, float) and abs(value) > FLOAT_LIMIT:
        return (f"{name} is too large: {show_value(value)} is beyond ±{FLOAT_LIMIT:g}",
                "PyTorch keeps this setting as a 32-bit float, which cannot hold it")
    return None


def value_hint(info, name: str, value: Any) -> str:
    """What to write instead of a value of the wrong type or out of range."""
    annotation = info.annotation
    if isinstance(value, str):
        literals = _literals(annotation)
        close = did_you_mean(value, literals) if literals else None
        if close:
            return close
        if re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value) and \
                (_accepts(annotation, int) or _accepts(annotation, float)):
            return f"remove the quotes: '{value.strip()}' in quotes is text, not a number"
        if value.startswith("$"):
            return ("expressions are evaluated in the fields of layers, block uses, params "
                    "and the input shape")
    if isinstance(value, bool) and not _accepts(annotation, bool):
        if _accepts(annotation, str):  # the YAML 1.1 booleans: a layer named `no` or `off`
            return ("YAML reads unquoted yes, no, on, off, true and false as booleans; "
                    "quote it if it is text")
        return f"true/false is not a number here; write e.g. {name}: {_example(annotation)}"
    if isinstance(value, float) and value.is_integer() and _accepts(annotation, int) and \
            not _accepts(annotation, float):
        return f"write a whole number without a decimal point: {name}: {int(value)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0 and \
            "non-negative" in describe_field(info):
        return f"{name} cannot be negative"
    if isinstance(value, str) and _bounds(info.metadata).get("pattern") and value.strip():
        fixed = re.sub(r"[^A-Za-z0-9_]+", "_", value.strip()).strip("_") or "layer1"
        return f"use letters, digits and '_' only, e.g. {name}: {fixed}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0 and \
            "positive" in describe_field(info):
        return "sizes, counts and strides start at 1" if _accepts(annotation, int) else \
            f"{name} must be greater than 0"
    if value == [] and not info.is_required():
        return f"give at least one, or leave out '{name}' for its default"
    if describe_field(info).endswith("of layers"):
        return "write the layers as a YAML list: '- {type: conv, ...}' or '- relu'"
    literals = _literals(annotation)
    if literals and isinstance(value, str):
        return "choose one of: " + ", ".join(literals)
    return info.description or f"e.g. {name}: {_example(annotation)}"
