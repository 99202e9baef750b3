"""The PyTorch back end: the lowering table (one torch module per layer kind, lowering.py), the
small modules it uses (modules.py) and the compiler to a torch.fx GraphModule (compiler.py).
Everything here imports torch: load it lazily."""
