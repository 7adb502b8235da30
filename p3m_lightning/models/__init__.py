"""What every matting method shares: encoders, trimap guidance, the model contract, checkpoint
I/O and the architecture allow-list.

The methods themselves (network, loss, test procedure) live in ``p3m_lightning.methods``, one
package each. Import from the modules: ``checkpoint`` (``load_model``, ``load_checkpoint``),
``registry`` (the allow-list), ``encoders``, ``contract``, ``trimap_guided``, ``init_from``,
``feature_copy_paste``, ``bn_folding``, ``safe_load``.
"""
