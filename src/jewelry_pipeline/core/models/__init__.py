"""Keras model builders and small TensorFlow helpers: pure functions, no file or tracking I/O."""
