//! Table definitions, connectors and readers shared by the `datagen` tests.

use std::collections::BTreeMap;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;

use crate::catalog::options::TableOptions;
use crate::catalog::table_definition::{ColumnDefinition, ColumnKind, TableDefinition};
use crate::connectors::SourceConnector;
use crate::connectors::datagen::{DatagenConnector, build};

pub(super) fn column(name: &str, data_type: DataType) -> ColumnDefinition {
    ColumnDefinition {
        name: name.to_string(),
        data_type,
        nullable: true,
        kind: ColumnKind::Physical,
    }
}

fn table(columns: Vec<ColumnDefinition>, options: &[(&str, &str)]) -> TableDefinition {
    let mut values: BTreeMap<String, String> = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    values.insert("connector".into(), "datagen".into());
    TableDefinition {
        name: "t".into(),
        columns,
        watermark: None,
        primary_key: vec![],
        partition_by: vec![],
        options: TableOptions::new("t", values),
        sql: String::new(),
    }
}

pub(super) fn connector(
    columns: Vec<ColumnDefinition>,
    options: &[(&str, &str)],
) -> DatagenConnector {
    DatagenConnector::try_new(&table(columns, options)).unwrap()
}

pub(super) fn error(columns: Vec<ColumnDefinition>, options: &[(&str, &str)]) -> String {
    build(&table(columns, options)).unwrap_err().to_string()
}

pub(super) async fn read(
    c: &DatagenConnector,
    partition: usize,
    partitions: usize,
    projection: &[usize],
    batch_size: usize,
) -> Vec<RecordBatch> {
    let mut reader = c
        .open(partition, partitions, projection, batch_size)
        .unwrap();
    let mut out = vec![];
    while let Some(b) = reader.next_batch().await.unwrap() {
        assert!(b.batch.num_rows() <= batch_size);
        out.push(b.batch);
    }
    out
}

pub(super) fn i64s(batches: &[RecordBatch], col: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(col).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}
