{
  "format": "sov-model-signature-v1",
  "name": "stories260K.gguf",
  "size": 1185376,
  "sha256":