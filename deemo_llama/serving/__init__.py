"""Serving: the vLLM adapter (``vllm_model``, registered by ``vllm_plugin``) and its HF config class.

The vLLM parts import ``vllm`` and run only in the serving environment (``.venv-vllm``, see
scripts/setup-vllm.sh); nothing else in the package imports them.
"""
