"""Drop-in APIs of other governance libraries, implemented on corral's kernel.

``corral.compat.shape`` speaks the API of Shape (github.com/vidanov/shape): a Shape program switches by
changing ``from shape import …`` to ``from corral.compat.shape import …`` and gets corral's semantics.
"""
