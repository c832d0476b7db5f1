"""The looks-like model: EfficientNet-Lite0, converted at build time to ONNX, run with cv2.dnn."""
