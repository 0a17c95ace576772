"""A toy world of coloured shapes and a tiny Janus model trained on it.

The world (``world``) renders 96x96 images of 1-3 shapes on a 3x3 grid and describes them in a
small fixed grammar; ``detect`` reads images back at the pixel level; ``train`` trains the real
transformers Janus classes on it; ``evaluate`` measures understanding and generation on the
held-out split through the same Janus adapter the real checkpoints use.
"""
