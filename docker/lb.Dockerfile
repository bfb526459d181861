# The load balancer of docker-compose.yml's `lb` profile: HAProxy from Debian's packages on the same
# base image as the other two images (nothing else to pull). Its configuration is docker/haproxy.cfg,
# mounted read-only by compose.
#
#   docker/build-images.sh lb           # or: DOCKER_BUILDKIT=0 docker build -f docker/lb.Dockerfile -t distillrec-lb .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
# extra certificate authorities for apt over https mirrors (docker/certs/*.crt; see docker/certs/README.md)
COPY docker/certs/ /usr/local/share/ca-certificates/distillrec/
RUN update-ca-certificates >/dev/null \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
# the Debian package's unprivileged user; the balancer listens on 8080 (no privileged port needed)
USER haproxy
EXPOSE 8080
# -W: master-worker, -db: stay in the foreground and log to stderr
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
