{
  "format": "sov-model-signature-v1",
  "name": "stories260K.gguf",
  "size": 1185376,
  "key_id": "21fe31dfa154a261",
  "signature": "iWlt8VKa0geqA/dGfSl33QuMTnZy6iBBb2fo50/ocI/Mx4UtBoFEn3bHTtzU5JPpVthsChNyLbzsUJr0wN1ACQ=="
}
