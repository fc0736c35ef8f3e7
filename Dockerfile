# fitserve image: the API and the workers run from the same image with different commands.
FROM python:3.11-slim
WORKDIR /app
# CPU build by default; TORCH_INDEX=https://download.pytorch.org/whl/cu126 for CUDA workers
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir "$TORCH_SPEC" --index-url "$TORCH_INDEX"
COPY pyproject.toml README.md alembic.ini ./
COPY alembic alembic
COPY service service
COPY workers workers
COPY modelzoo modelzoo
COPY server server
COPY client client
# postgres,ray for an image that can also be a Ray node (docker-compose.yml builds that one)
ARG EXTRAS=postgres
# the client (the `fitserve` command) beside the server, which depends on it
RUN pip install --no-cache-dir ./client ".[${EXTRAS}]"
ENV FITSERVE_DATABASE_URL=sqlite:////app/var/fitserve.db
EXPOSE 8000
CMD ["fitserve", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "0"]
