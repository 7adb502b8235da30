"""The benchmark's matting methods, one package each.

A method's package holds what is its own: ``network.py`` (the ``nn.Module``), ``loss.py`` (its
training objective), ``inference.py`` (its test-time procedure, where it has one of its own)
and, in ``__init__.py``, ``ARCHITECTURE``: its entry of the checkpoint allow-list. Its Hydra
config is ``conf/model/<method>.yaml`` and its documentation ``docs/methods/<method>.md``.
Pieces several methods use live outside: encoders, the trimap guidance, checkpoint I/O and the
allow-list in ``p3m_lightning.models``; shared loss terms in ``p3m_lightning.losses``; generic
test-time strategies (resize, trimap-guided) in ``p3m_lightning.inference``.

``BUILTIN_ARCHITECTURES`` is the explicit list of built-in methods (checkpoints are untrusted
input, so nothing is discovered: a method is allowed by being named here). Importing this
package imports no network: the entries hold import paths, resolved when a network is built.
"""

from p3m_lightning.methods import (
    alphagan,
    basic,
    dim,
    fba,
    gca,
    gfm,
    hatt,
    indexnet,
    lf,
    modnet,
    p3m_journal,
    p3m_net,
    shm,
)

BUILTIN_ARCHITECTURES = (
    p3m_net.ARCHITECTURE,
    p3m_journal.ARCHITECTURE,
    gfm.ARCHITECTURE,
    modnet.ARCHITECTURE,
    shm.ARCHITECTURE,
    lf.ARCHITECTURE,
    hatt.ARCHITECTURE,
    basic.ARCHITECTURE,
    dim.ARCHITECTURE,
    alphagan.ARCHITECTURE,
    gca.ARCHITECTURE,
    indexnet.ARCHITECTURE,
    fba.ARCHITECTURE,
)
"""The built-in methods' allow-list entries, in the order of the paper's tables."""
