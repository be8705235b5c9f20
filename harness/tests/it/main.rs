//! Integration tests against the real broker (tansu locally, any Kafka in general) and real Postgres.
//! One test binary for the workspace keeps link time down; each module covers one area.
#![allow(clippy::unwrap_used)]

mod activity;
mod auth;
mod browser;
mod content;
mod crash;
mod erasure;
mod export;
mod fanout_store;
mod feed_model;
mod im_api;
mod im_model;
mod ingest_api;
mod openapi;
mod operations;
mod pipeline;
mod plans;
mod reader_api;
mod realtime;
mod replay;
mod retention;
mod safety;
mod search;
mod web;
mod web_client;
