# keelson: the two commands a newcomer needs are `make up` and `make test` (README.md).
SHELL := /bin/bash
DATA_DIR ?= /var/lib/keelson
PORT ?= 6443

.PHONY: setup up down test lint bench

setup:            ## host packages, .venv, dockerd, local images (idempotent)
	bash scripts/setup-host.sh

up: setup         ## start a local cluster in the background and show how to use it
	DATA_DIR=$(DATA_DIR) PORT=$(PORT) bash scripts/up.sh

down:             ## stop what `make up` started (pods keep running, as with kubelet)
	DATA_DIR=$(DATA_DIR) bash scripts/down.sh

test: setup       ## the whole test suite (unit, functional, e2e); what CI runs
	bash scripts/test.sh

lint:
	.venv/bin/ruff check .

bench: setup      ## benchmarks that print figures (not part of `make test`)
	for b in bench/*.py; do case $$b in */_*) continue;; esac; .venv/bin/python $$b || exit 1; done
