"""Front end: safe YAML with source positions, schemas, expansion into the IR."""
from .document import SpecDocument, build_network, load, load_stream, loads  # noqa: F401
from .yaml_loader import Limits, SourceMap, load_yaml, load_yaml_file  # noqa: F401
