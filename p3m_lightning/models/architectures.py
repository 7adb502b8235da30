"""The built-in matting architectures (the allow-list of ``models.registry``).

Targets are import paths, resolved only when an architecture is built, so listing a method
here costs nothing until it is used.
"""

from __future__ import annotations

from p3m_lightning.models.registry import Architecture, register_architecture

BUILTIN_ARCHITECTURES = (
    Architecture(
        "p3m_net",
        "p3m_lightning.models.p3mnet:P3MNet",
        "resize",
        photo_strategy="hybrid",
        builder="p3m_lightning.models.p3mnet:build_p3mnet",
        description="P3M-Net (ACM MM 2021), ResNet-34-mp or timm encoder",
    ),
    Architecture(
        "p3m_journal",
        "p3m_lightning.models.p3m_journal.network:P3MJournalNet",
        "hybrid",
        published="p3m_lightning.models.p3m_journal.network:drop_attention_masks",
        description="journal P3M-Net (IJCV 2023), ViTAE-S or Swin-T encoder",
        not_exportable="its Swin-T / ViTAE-S window and token reshapes are traced at one size",
    ),
    Architecture(
        "gfm",
        "p3m_lightning.models.gfm.network:GFMNet",
        "gfm_hybrid",
        description="GFM, Glance and Focus Matting (IJCV 2022), ResNet-34",
        not_exportable="its PSP module's adaptive pooling needs the input size at export",
    ),
    Architecture(
        "modnet",
        "p3m_lightning.models.modnet.network:MODNet",
        "modnet",
        description="MODNet (AAAI 2022), MobileNetV2",
    ),
    Architecture(
        "shm",
        "p3m_lightning.models.shm.network:SHMNet",
        "resize",
        description="SHM, Semantic Human Matting (ACM MM 2018)",
        not_exportable="its PSP module's adaptive pooling needs the input size at export",
    ),
    Architecture(
        "lf",
        "p3m_lightning.models.lf.network:LFNet",
        "resize",
        description="LF, Late Fusion matting (CVPR 2019), DenseNet-201",
    ),
    Architecture(
        "hatt",
        "p3m_lightning.models.hatt.network:HATTNet",
        "resize",
        description="HATT, hierarchical attention matting (CVPR 2020), ResNeXt-101",
    ),
    Architecture(
        "basic",
        "p3m_lightning.models.basic.network:BASICNet",
        "resize",
        description="BASIC, Background Matting (CVPR 2020), image + background plate",
    ),
    Architecture(
        "dim",
        "p3m_lightning.models.dim.network:DIMNet",
        "trimap_guided",
        description="DIM, Deep Image Matting (CVPR 2017), VGG-16, trimap-based",
    ),
    Architecture(
        "alphagan",
        "p3m_lightning.models.alphagan.network:AlphaGANGenerator",
        "trimap_guided",
        description="AlphaGAN generator (BMVC 2018), ResNet-50 + ASPP, trimap-based",
    ),
    Architecture(
        "gca",
        "p3m_lightning.models.gca.network:GCANet",
        "trimap_guided",
        description="GCA Matting (AAAI 2020), ResNet-34, trimap-based",
        not_exportable="guided contextual attention unfolds patches of the input size",
    ),
    Architecture(
        "indexnet",
        "p3m_lightning.models.indexnet.network:IndexNet",
        {"name": "trimap_guided", "align": "resize"},
        description="IndexNet Matting (ICCV 2019), MobileNetV2, trimap-based",
    ),
    Architecture(
        "fba",
        "p3m_lightning.models.fba.network:FBANet",
        {"name": "trimap_guided", "align": "resize"},
        description="FBA Matting (2020), ResNet-50 GN+WS, trimap-based",
        not_exportable="aten::cummax (its trimap distance transform) has no ONNX operator",
    ),
)

for _architecture in BUILTIN_ARCHITECTURES:
    register_architecture(_architecture)
