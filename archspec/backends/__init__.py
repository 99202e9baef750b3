"""Back ends: PyTorch (torch_backend), graphviz diagrams, terminal table and JSON (report)."""
