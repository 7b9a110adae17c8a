"""The bundled layer-decomposition model: photo -> background, K objects (RGBA), K shadow mattes.

nanoGPT layout: :mod:`.config` (ModelConfig, TrainConfig), :mod:`.model` (the network),
:mod:`.train` (the loop, one checkpoint dict), plus :mod:`.losses`, :mod:`.degrade` (boundary
degradations of the restoration objective), :mod:`.data` (layered shards -> tensors),
:mod:`.infer` (load_model, decompose_image with exact recomposition) and :mod:`.cli`.

Nothing here imports torch at package import time; import the submodules you need.
"""
