"""FlexTok training recipe: our own PyTorch modules with the official FlexTok inference
semantics, state_dict key names and config format (see train/README.md)."""
