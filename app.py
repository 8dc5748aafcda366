"""The radiologist's web app (Gradio). UI only: nothing heavy happens at import.

``build_demo(engine)`` returns the ``gr.Blocks``; ``main()`` starts it on loopback.
"""

from __future__ import annotations

from typing import Any

DISCLAIMER = (
    "vfrisk is research software and decision support for clinicians. It is not a diagnostic device and "
    "does not replace clinical judgement."
)


def build_demo(engine: Any = None) -> Any:
    """Build the Gradio Blocks for the given inference engine."""
    import gradio as gr

    with gr.Blocks(title="vfrisk") as demo:
        gr.Markdown("# vfrisk: 6-month vertebral fracture risk")
        gr.Markdown(DISCLAIMER)
        gr.Markdown("The scoring pages are being built: ingestion, model, engine and reports land issue by issue.")
    return demo


def main(host: str = "127.0.0.1", port: int = 7860) -> None:
    """Start the web app bound to ``host`` (loopback by default)."""
    demo = build_demo(None)
    demo.launch(server_name=host, server_port=port, share=False)


if __name__ == "__main__":
    main()
