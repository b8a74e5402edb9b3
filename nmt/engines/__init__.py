"""The engines that decode for `nmt translate`, `nmt serve` and `nmt tune`, behind one protocol (`base.Engine`):

- `pytorch.Translator`: this package's models (one or an ensemble), every search feature;
- `ctranslate2.CTranslate2Translator`: a folder written by `nmt export ctranslate2`, decoded by CTranslate2;
- `spec`: which engine a command's options ask for, loaded from a picklable spec (a server's worker processes load
  their own copies), and the search settings resolved from the options and what the checkpoint stores.

Submodules are imported where needed: the PyTorch engine pulls in torch, the other CTranslate2.
"""
