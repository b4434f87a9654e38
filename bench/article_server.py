"""A RE-CREATION of the edge-AI article's FastAPI server, kept for comparison only. Not edgeship code.

It reproduces the article's design as written, defects included, so bench/serve_load.py can
measure edgeship against it:
- ``session.run`` inside an ``async def`` handler (blocks the event loop: one request at a time);
- PIL resize straight to 224x224 and normalisation in float64;
- only the declared content type is checked; no size limit; health says "healthy" without a model run.

One change, the smallest that lets it answer at all: the float64 tensor is cast to float32 before
``session.run`` (ONNX Runtime rejects float64 for a float32 model, so the article's code as
printed answers every request with a 500). Session options are ONNX Runtime's defaults, as in
the article.

    python bench/article_server.py MODEL.onnx --port 8001
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image


def create_article_app(model_path: str) -> FastAPI:
    app = FastAPI()
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def preprocess(image: Image.Image) -> np.ndarray:
        image = image.resize((224, 224))
        arr = np.array(image) / 255.0  # float64, as in the article
        mean = np.array([0.485, 0.456, 0.406])
        std = np.array([0.229, 0.224, 0.225])
        arr = (arr - mean) / std
        arr = arr.transpose(2, 0, 1)
        arr = np.expand_dims(arr, axis=0)
        return arr.astype(np.float32)  # the one fix: the article passes float64 and ORT refuses it

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)):
        if not file.content_type.startswith("image/"):
            raise HTTPException(status_code=400, detail="File must be an image")
        contents = await file.read()
        image = Image.open(io.BytesIO(contents)).convert("RGB")
        input_tensor = preprocess(image)
        outputs = session.run(None, {input_name: input_tensor})  # on the event loop, as in the article
        logits = outputs[0][0]
        probs = np.exp(logits - logits.max())
        probs = probs / probs.sum()
        top5 = np.argsort(probs)[-5:][::-1]
        return {"predictions": [{"class_id": int(i), "probability": float(probs[i])} for i in top5]}

    @app.get("/health")
    async def health():
        return {"status": "healthy"}

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    args = p.parse_args()
    uvicorn.run(create_article_app(args.model), host=args.host, port=args.port)  # defaults, as in the article


if __name__ == "__main__":
    main()
