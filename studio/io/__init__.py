"""Files in and out, below every feature and with no Qt: atomic writes (`atomic`), model weights as safetensors and
their hashes (`weights`), the one safetensors-header reader (`safetensors`), the model-package writer (`package`),
checkpoints from elsewhere read without running them (`checkpoints`), pictures inside requests (`images`), the
request inside exported files (`metadata`) and colour maps (`colormap`). Import the module you need: this package
imports none of them, so the torch-free ones stay torch-free."""
