# One image for every process: the command chooses which (see compose.yaml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY coproduction coproduction
COPY services services
COPY gateway gateway
COPY bootstrap bootstrap
COPY interop interop
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 coproduction
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER coproduction
WORKDIR /home/coproduction
ENV PYTHONUNBUFFERED=1 VAR_DIR=/home/coproduction/var
EXPOSE 8000 8001 8002 8003 8004 9100
CMD ["coproduction", "--help"]
