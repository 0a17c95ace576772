"""The Gradio web app over the model manager.

Importing this package builds nothing and launches nothing: ``umm.ui.app.build_app`` builds the
Blocks, ``umm.ui.main.main`` parses flags and launches. Both import gradio lazily.
"""
