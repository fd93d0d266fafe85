//! What a plugin driver is opened with: the plugin's name, where to look for it, the log
//! options it is given (`Info.Config`) and where its FIFOs go.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::fifo::DEFAULT_FIFO_ROOT;
use crate::plugin::discovery::{validate_name, SearchPath};

/// A plugin driver's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOptions {
    /// The plugin's name (validated).
    pub name: String,
    /// Where to look for it (dockerd's paths, or the runtime option `PluginDirs`).
    pub search: SearchPath,
    /// The log options given to the plugin (Docker passes the container's log-opts).
    pub config: BTreeMap<String, String>,
    /// Where the container's FIFO directory is made.
    pub fifo_root: PathBuf,
}

impl PluginOptions {
    /// Options for plugin `name` with `config`; a bad name is an error naming it.
    pub fn new(
        name: &str,
        search: SearchPath,
        config: BTreeMap<String, String>,
    ) -> Result<PluginOptions, String> {
        validate_name(name)?;
        Ok(PluginOptions {
            name: name.to_owned(),
            search,
            config,
            fifo_root: PathBuf::from(DEFAULT_FIFO_ROOT),
        })
    }
}
