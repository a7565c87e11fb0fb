"""Generator files that are programs (TorchScript modules, ONNX graphs) with a model.toml beside them: the
`torchscript` and `onnx` families, which share how a latent goes in and a picture or sound comes out."""
