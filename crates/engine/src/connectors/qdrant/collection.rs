//! A collection's definition: everything needed to create it again (vector parameters,
//! distance, HNSW, quantization, optimizer, WAL, strict mode, sharding and replication, payload
//! indexes, shard keys) and the aliases that point at it. Kept as Qdrant reports it, so a
//! setting this build does not know about is still carried over.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::api::{seg, Client};
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Definition {
    pub name: String,
    /// `config` from GET /collections/{name}.
    pub config: Value,
    /// `payload_schema` from GET /collections/{name}: field -> {data_type, params, points}.
    pub payload_schema: Map<String, Value>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Shard keys of a collection with custom sharding.
    #[serde(default)]
    pub shard_keys: Vec<Value>,
}

impl Definition {
    pub fn read(client: &Client, name: &str) -> Result<Self> {
        let info = client.get(&format!("/collections/{}", seg(name)))?;
        let aliases = client.get(&format!("/collections/{}/aliases", seg(name)))?;
        let aliases = aliases["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["alias_name"].as_str().map(str::to_string))
            .collect();
        let custom = info["config"]["params"]["sharding_method"].as_str() == Some("custom");
        let shard_keys = if custom {
            let keys = client.get(&format!("/collections/{}/shards", seg(name)))?;
            keys["shard_keys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| k["key"].clone())
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            name: name.to_string(),
            config: info["config"].clone(),
            payload_schema: info["payload_schema"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
            aliases,
            shard_keys,
        })
    }

    /// Vector names by kind, for choosing what to query: ("" is the unnamed vector).
    pub fn vector_names(&self) -> Vec<String> {
        let params = &self.config["params"];
        let mut names = Vec::new();
        match &params["vectors"] {
            Value::Object(m) if m.contains_key("size") => names.push(String::new()),
            Value::Object(m) => names.extend(m.keys().cloned()),
            _ => {}
        }
        if let Some(m) = params["sparse_vectors"].as_object() {
            names.extend(m.keys().cloned());
        }
        names
    }

    /// The body of PUT /collections/{name} that creates it as it was.
    pub fn create_body(&self) -> Value {
        let c = &self.config;
        let p = &c["params"];
        let mut body = Map::new();
        for key in [
            "vectors",
            "sparse_vectors",
            "shard_number",
            "sharding_method",
            "replication_factor",
            "write_consistency_factor",
            "on_disk_payload",
        ] {
            put(&mut body, key, &p[key]);
        }
        put(&mut body, "hnsw_config", &c["hnsw_config"]);
        // Reported as `optimizer_config`, created as `optimizers_config`.
        put(&mut body, "optimizers_config", &c["optimizer_config"]);
        put(&mut body, "wal_config", &c["wal_config"]);
        put(&mut body, "quantization_config", &c["quantization_config"]);
        put(&mut body, "strict_mode_config", &c["strict_mode_config"]);
        put(&mut body, "metadata", &c["metadata"]);
        Value::Object(body)
    }

    /// Creates the collection as `target`: definition, the parameters only an update sets,
    /// shard keys and payload indexes. Aliases are the caller's decision.
    pub fn create(&self, client: &Client, target: &str) -> Result<()> {
        let path = format!("/collections/{}", seg(target));
        client.put(&path, &self.create_body())?;
        let p = &self.config["params"];
        let mut later = Map::new();
        for key in ["read_fan_out_factor", "read_fan_out_delay_ms"] {
            put(&mut later, key, &p[key]);
        }
        if !later.is_empty() {
            client.call(
                reqwest::Method::PATCH,
                &path,
                Some(&json!({ "params": later })),
            )?;
        }
        for key in &self.shard_keys {
            client.put(&format!("{path}/shards"), &json!({ "shard_key": key }))?;
        }
        for (field, schema) in &self.payload_schema {
            let field_schema = match &schema["params"] {
                Value::Null => schema["data_type"].clone(),
                params => params.clone(),
            };
            client
                .put(
                    &format!("{path}/index?wait=true"),
                    &json!({ "field_name": field, "field_schema": field_schema }),
                )
                .map_err(|e| e.context(format!("payload index on '{field}'")))?;
        }
        Ok(())
    }

    /// Points each recorded alias at `target`.
    pub fn restore_aliases(&self, client: &Client, target: &str) -> Result<()> {
        if self.aliases.is_empty() {
            return Ok(());
        }
        let actions: Vec<Value> = self
            .aliases
            .iter()
            .map(|a| json!({ "create_alias": { "collection_name": target, "alias_name": a } }))
            .collect();
        client.post("/collections/aliases", &json!({ "actions": actions }))?;
        Ok(())
    }
}

/// Sets `key` unless the value is null (Qdrant reports unset options as null; an update
/// body leaves them out).
fn put(body: &mut Map<String, Value>, key: &str, v: &Value) {
    if !v.is_null() {
        body.insert(key.to_string(), strip_nulls(v));
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Names of the collections on the server.
pub fn list(client: &Client) -> Result<Vec<String>> {
    let r = client.get("/collections")?;
    let mut names: Vec<String> = r["collections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// True if the collection exists.
pub fn exists(client: &Client, name: &str) -> Result<bool> {
    match client.get(&format!("/collections/{}/exists", seg(name))) {
        Ok(v) => Ok(v["exists"].as_bool().unwrap_or(false)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The exact number of points.
pub fn count(client: &Client, name: &str) -> Result<u64> {
    let r = client.post(
        &format!("/collections/{}/points/count", seg(name)),
        &json!({ "exact": true }),
    )?;
    r["count"]
        .as_u64()
        .ok_or_else(|| Error::new(ErrorKind::Source, "Qdrant's count answer has no count"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_carries_the_settings_over() {
        let d = Definition {
            name: "docs".into(),
            config: json!({
                "params": {"vectors": {"size": 4, "distance": "Cosine", "on_disk": null},
                           "shard_number": 2, "replication_factor": 1, "on_disk_payload": true,
                           "sparse_vectors": {"bm25": {"modifier": "idf"}}},
                "hnsw_config": {"m": 32, "ef_construct": 200, "max_indexing_threads": 0},
                "optimizer_config": {"indexing_threshold": 1000, "max_optimization_threads": null},
                "wal_config": {"wal_capacity_mb": 16},
                "quantization_config": {"scalar": {"type": "int8", "always_ram": true}},
                "strict_mode_config": null
            }),
            payload_schema: Map::new(),
            aliases: vec![],
            shard_keys: vec![],
        };
        let b = d.create_body();
        assert_eq!(b["vectors"], json!({"size": 4, "distance": "Cosine"}));
        assert_eq!(b["optimizers_config"], json!({"indexing_threshold": 1000}));
        assert_eq!(b["hnsw_config"]["m"], 32);
        assert_eq!(b["quantization_config"]["scalar"]["type"], "int8");
        assert!(b.get("strict_mode_config").is_none());
        assert_eq!(d.vector_names(), vec!["".to_string(), "bm25".to_string()]);
    }
}
