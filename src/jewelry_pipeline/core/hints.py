"""Type-hint names for heavy libraries that resolve at run time without importing them: Kedro reads
every node's hints when a run starts, while TensorFlow and matplotlib load inside the nodes that use
them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keras import Model as KerasModel
    from matplotlib.figure import Figure
else:
    KerasModel = Any  # a Keras model (keras.Model), named without importing TensorFlow
    Figure = Any  # a matplotlib figure (matplotlib.figure.Figure), named without importing it
