FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ireserve_salto ireserve_salto
COPY bookings bookings
COPY integrations integrations
COPY locks locks
COPY templates templates
COPY static static
COPY manage.py ./
RUN pip install --no-cache-dir .
ENV DEBUG=0
