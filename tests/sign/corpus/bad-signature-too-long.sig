{
  "format": "sov-model-signature-v1",
  "name": "stories260K.gguf",
  "size": 1185376,
  "sha256": "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
  "key_id": "21fe31dfa154a261",
  "signature": "iWlt8VKa0geqA/dGfSl33QuMTnZy6iBBb2fo50/ocI/Mx4UtBoFEn3bHTtzU5JPpVthsChNyLbzsUJr0wN1ACQ==iWlt8VKa0geqA/dGfSl33QuMTnZy6iBBb2fo50/o"
}
