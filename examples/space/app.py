"""Hugging Face Space entry: serve the ser-hf emotion page for the model named by $SER_HF_MODEL.

Runs locally too: ``SER_HF_MODEL=out/best python examples/space/app.py``. On a Space, set the variable
in the Space settings (a Hub model id, or a folder committed with the Space) and keep this file as
``app.py``. ``SER_HF_MAX_UPLOAD_MB`` sets the upload limit (default 50).
"""

import os
import sys

from ser_hf.web import DEFAULT_MAX_UPLOAD_MB, launch


def main() -> None:
    model = os.environ.get("SER_HF_MODEL")
    if not model:
        sys.exit("Set SER_HF_MODEL to a Hub model id or a saved model folder (e.g. SER_HF_MODEL=out/best).")
    launch(
        model,
        # Spaces route traffic to 0.0.0.0:7860 and set GRADIO_SERVER_NAME/PORT; locally, stay on loopback.
        host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_upload_mb=float(os.environ.get("SER_HF_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)),
    )


if __name__ == "__main__":
    main()
