//! The `filesystem` connector: bounded files as a source, rolling files as a sink.
//!
//! - [`source`]: `path` is a file or a directory (every non-hidden file in it, in name order);
//!   files are spread over up to `parallelism` readers, one watermark per reader.
//! - [`sink`]: rows are written into files in the `path` directory. A file is written under a
//!   hidden in-progress name and renamed to its final `part-...` name only when complete (at a
//!   barrier or at the end of input), so readers never see a partial file.
//!
//! The WITH options are read once, when the table is declared, into [`FilesystemOptions`].

pub mod sink;
pub mod source;

use std::sync::Arc;

use datafusion::common::{Result, plan_err};

use super::format::{FORMAT_OPTIONS, FORMATS, FormatOptions};
use super::{SinkConnector, SourceConnector};
use crate::catalog::options::{OptionSpec, SOURCE_COMMON_OPTIONS, TableOptions};
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

/// The WITH options of a filesystem table, read once when the table is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemOptions {
    /// The table's name, for messages.
    pub table: String,
    /// `path`: the file or directory read; the directory written into.
    pub path: String,
    /// `format` (json or csv) and the options of that format.
    pub format: FormatOptions,
}

impl FilesystemOptions {
    /// Reads the options of a filesystem table (their keys already validated).
    pub fn parse(options: &TableOptions) -> Result<Self> {
        let format = FormatOptions::parse(options, FORMATS)?;
        Ok(Self {
            table: options.table().to_string(),
            path: options.required("path")?.to_string(),
            format,
        })
    }
}

/// Builds both sides of a filesystem table.
pub fn build(def: &TableDefinition) -> Result<(Arc<dyn SourceConnector>, Arc<dyn SinkConnector>)> {
    def.options.validate(
        "filesystem",
        &[FILESYSTEM_OPTIONS, FORMAT_OPTIONS, SOURCE_COMMON_OPTIONS],
    )?;
    let options = FilesystemOptions::parse(&def.options)?;
    if let Some(c) = def.metadata_columns().first() {
        return plan_err!(
            "column {} of filesystem table {} is a METADATA column; files have no record \
             metadata",
            c.name,
            def.name
        );
    }
    Ok((
        Arc::new(source::FileSource::new(def, options.clone())),
        Arc::new(sink::FileSink::new(options, def.partition_by.clone())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::format::{CsvOptions, Format};

    fn options(pairs: &[(&str, &str)]) -> TableOptions {
        TableOptions::of_pairs(pairs)
    }

    /// The csv options follow the format however it is spelled: a source used to skip the
    /// header only for `'format' = 'csv'` exactly, while the sink wrote one for `'CSV'` too.
    #[test]
    fn csv_header_with_the_format_in_capitals() {
        let parsed = FilesystemOptions::parse(&options(&[
            ("path", "/data/in"),
            ("format", "CSV"),
            ("csv.header", "true"),
        ]))
        .unwrap();
        assert_eq!(
            parsed,
            FilesystemOptions {
                table: "t".to_string(),
                path: "/data/in".to_string(),
                format: FormatOptions {
                    format: Format::Csv,
                    ignore_parse_errors: false,
                    csv: CsvOptions {
                        delimiter: b',',
                        quote: b'"',
                        header: true,
                    },
                },
            }
        );
    }

    /// Files hold json or csv lines; raw is Kafka's.
    #[test]
    fn raw_is_not_a_file_format() {
        let err = FilesystemOptions::parse(&options(&[("path", "/data"), ("format", "raw")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("option 'format' of table t is 'raw', but it must be one of: json, csv"),
            "{err}"
        );
    }
}
