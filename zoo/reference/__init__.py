"""Reference implementations in plain torch of encoders no library carries (Vision Mamba,
ALBEF, VLMo, BEiT-3, ...): each loads its official checkpoint's key layout through `convert`."""
