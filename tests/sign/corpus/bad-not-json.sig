format: sov-model-signature-v1
