//! Building a [`PostgresSaver`]: the pool, the schema and the durability.

use super::*;

/// Builds a [`PostgresSaver`].
#[derive(Debug, Clone)]
pub struct PostgresSaverBuilder {
    pub(super) url: String,
    pub(super) schema: String,
    pub(super) pool_size: usize,
    pub(super) durability: PgDurability,
}

impl PostgresSaverBuilder {
    /// The schema the tables live in (default `public`; created if missing).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the pool opens (default 8).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// When writes reach the disk (default [`PgDurability::RunEnd`]).
    pub fn durability(mut self, durability: PgDurability) -> Self {
        self.durability = durability;
        self
    }

    /// Connects and runs the migrations.
    pub async fn connect(self) -> Result<PostgresSaver, CheckpointError> {
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(backend)?;
        if self.durability == PgDurability::RunEnd {
            config.options("-c synchronous_commit=off");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .build()
            .map_err(backend)?;
        let saver = PostgresSaver::from_pool(pool, &self.schema, self.durability)?;
        saver.setup().await?;
        Ok(saver)
    }
}
