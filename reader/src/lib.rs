//! Reader: the read API — feeds, sync scans and store timelines, straight from Postgres.
//!
//! Architecture invariant: the reader never writes timelines; its queries are plain reads that each see
//! one snapshot, so a page never mixes states.
//!
//! # Layout
//! - [`config`]: command line and environment.
//! - [`queries`]: the SQL behind each endpoint, and the cursor format.
//! - [`routes`]: the HTTP handlers and parameter validation.
//! - [`openapi`]: the OpenAPI document of the routes, served at `/openapi.json`.

pub mod config;
pub mod im;
pub mod openapi;
pub mod queries;
pub mod routes;

use std::future::Future;
use std::time::Duration;

use prometheus::Registry;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Bind(#[from] httpkit::BindError),
    #[error("invalid database URL")]
    Database(#[from] sqlx::Error),
    #[error("cannot register metrics")]
    Metrics(#[from] prometheus::Error),
}

pub struct App {
    listener: TcpListener,
    router: axum::Router,
}

impl App {
    pub async fn build(config: &Config, registry: Registry) -> Result<App, BuildError> {
        let options: PgConnectOptions = config.database_url.expose_secret().parse()?;
        // A stuck query must end as a 503, not hold the request (and a connection) forever.
        let statement_timeout = format!("{}ms", config.query_timeout_ms);
        let options = options.options([("statement_timeout", statement_timeout.as_str())]);
        // Lazy: the reader starts (and answers 503) while Postgres is down, and recovers by itself.
        let pool = PgPoolOptions::new()
            .max_connections(config.db_connections.max(1))
            .acquire_timeout(Duration::from_millis(config.query_timeout_ms))
            .connect_lazy_with(options);
        let http_metrics = httpkit::HttpMetrics::new(&registry)?;
        let readiness = {
            let pool = pool.clone();
            httpkit::Readiness::new(move || {
                let pool = pool.clone();
                async move {
                    sqlx::query("SELECT 1")
                        .execute(&pool)
                        .await
                        .map(|_| ())
                        .map_err(|_| "database unavailable".to_owned())
                }
            })
        };
        let router = httpkit::with_common_layers(
            routes::router(pool.clone()).merge(im::router(pool)),
            registry,
            http_metrics,
            readiness,
            16 * 1024,
        );
        let listener = httpkit::bind(config.listen).await?;
        Ok(App { listener, router })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        httpkit::serve(self.listener, self.router, shutdown).await
    }
}
