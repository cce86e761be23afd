//! The `filesystem` connector: bounded files as a source, rolling files as a sink.
//!
//! - [`source`]: `path` is a file or a directory (every non-hidden file in it, in name order);
//!   files are spread over up to `parallelism` readers, one watermark per reader.
//! - [`sink`]: rows are written into files in the `path` directory. A file is written under a
//!   hidden in-progress name and renamed to its final `part-...` name only when complete (at a
//!   barrier or at the end of input), so readers never see a partial file.

pub mod sink;
pub mod source;

use std::sync::Arc;

use datafusion::common::{Result, plan_err};

use super::format::FORMAT_OPTIONS;
use super::options::{OptionSpec, SOURCE_COMMON_OPTIONS};
use super::{SinkConnector, SourceConnector};
use crate::catalog::table_definition::TableDefinition;

/// Options of filesystem tables.
pub const FILESYSTEM_OPTIONS: &[OptionSpec] = &[
    OptionSpec::required("path", "a file, or a directory of files"),
    OptionSpec::required("format", "json (one object per line) or csv"),
    OptionSpec::optional(
        "csv.header",
        "files start with a header line (default: false)",
    ),
];

/// Builds both sides of a filesystem table.
pub fn build(def: &TableDefinition) -> Result<(Arc<dyn SourceConnector>, Arc<dyn SinkConnector>)> {
    def.options.validate(
        "filesystem",
        &[FILESYSTEM_OPTIONS, FORMAT_OPTIONS, SOURCE_COMMON_OPTIONS],
    )?;
    def.options.get_choice("format", super::format::FORMATS)?;
    if let Some(c) = def.metadata_columns().first() {
        return plan_err!(
            "column {} of filesystem table {} is a METADATA column; files have no record \
             metadata",
            c.name,
            def.name
        );
    }
    let path = def.options.required("path")?.to_string();
    Ok((
        Arc::new(source::FileSource::new(def, path.clone())),
        Arc::new(sink::FileSink::new(def, path)),
    ))
}
