"""Batch evaluation (``deemo eval``): tasks, a resumable runner for a local checkpoint or any
OpenAI-compatible endpoint, a judge LLM, reports and run comparison. See eval/README.md."""
