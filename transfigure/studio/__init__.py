"""The studio: a local web app to try models on uploads and to run human perceptual
studies (the CycleGAN paper's real-vs-fake test, the CartoonGAN survey's closest
style), with their results and confidence intervals. Needs the `studio` extra
(FastAPI, uvicorn, python-multipart); the study logic and statistics do not."""
