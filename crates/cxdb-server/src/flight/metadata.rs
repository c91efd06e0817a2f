//! What Flight SQL drivers ask about the server before they run anything:
//! `GetSqlInfo` (JDBC reads most keys into `DatabaseMetaData` and fails on a
//! missing one), `GetXdbcTypeInfo` (ODBC / Power BI map column types with
//! it), and the empty key listings (cxdb has no primary or foreign keys, but
//! DBeaver asks for them on every table it opens).

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, SupportedSqlGrammar, XdbcDataType,
    XdbcDatetimeSubcode,
};
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;

/// `FLIGHT_SQL_SERVER_NAME`.
pub(crate) const SERVER_NAME: &str = "cxdb";

pub(crate) fn sql_info() -> &'static SqlInfoData {
    &SQL_INFO
}

pub(crate) fn xdbc_type_info() -> &'static XdbcTypeInfoData {
    &XDBC_TYPE_INFO
}

/// Bitmask of the enum values in `bits`.
fn mask(bits: &[i32]) -> i32 {
    bits.iter().fold(0, |m, b| m | (1 << b))
}

const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "cbrt", "ceil", "cos", "degrees", "exp", "floor", "ln",
    "log", "log10", "log2", "pi", "power", "radians", "random", "round", "signum", "sin", "sqrt",
    "tan", "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "chr",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "regexp_like",
    "regexp_match",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "to_hex",
    "translate",
    "trim",
    "upper",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "datepart",
    "datetrunc",
    "from_unixtime",
    "now",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_timestamp_micros",
    "to_timestamp_millis",
    "to_timestamp_seconds",
    "business_seconds",
    "business_add",
];
const SYSTEM_FUNCTIONS: &[&str] = &["array_agg", "arrow_typeof", "coalesce", "nullif", "struct"];

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, SERVER_NAME);
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow IPC format version (Schema.fbs MetadataVersion V5).
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    // Read-only until CREATE VIEW arrives (issue #7).
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    // CommandStatementIngest into `events`.
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);

    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    // Unquoted identifiers are folded to lower case; quoted ones are kept.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    // DataFusion's default: NULLS LAST for ASC, i.e. nulls sort high.
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    let keywords: Vec<String> = ALL_KEYWORDS.iter().map(|k| k.to_string()).collect();
    b.append(SqlInfo::SqlKeywords, keywords);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(SqlInfo::SqlSystemFunctions, SYSTEM_FUNCTIONS);
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(
        SqlInfo::SqlSupportsConvert,
        std::collections::BTreeMap::<i32, Vec<i32>>::new(),
    );
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    // SqlSupportedGroupBy: UNRELATED | BEYOND_SELECT.
    b.append(SqlInfo::SqlSupportedGroupBy, mask(&[0, 1]));
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        mask(&[
            SupportedSqlGrammar::SqlMinimumGrammar as i32,
            SupportedSqlGrammar::SqlCoreGrammar as i32,
        ]),
    );
    // ANSI-92 entry level.
    b.append(SqlInfo::SqlAnsi92SupportedLevel, mask(&[0]));
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    // Subqueries in comparisons, EXISTS, IN.
    b.append(SqlInfo::SqlSupportedSubqueries, mask(&[0, 1, 2]));
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    // UNION and UNION ALL.
    b.append(SqlInfo::SqlSupportedUnions, mask(&[0, 1]));
    // No limits of these kinds (0 means "unknown or none" to JDBC).
    for info in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        b.append(info, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    // SqlTransactionIsolationLevel::SqlTransactionNone.
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    // SqlSupportedResultSetType::SqlResultSetTypeForwardOnly.
    b.append(SqlInfo::SqlSupportedResultSetTypes, mask(&[1]));
    for info in [
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
    ] {
        // SqlSupportedResultSetConcurrency::SqlResultSetConcurrencyReadOnly.
        b.append(info, mask(&[1]));
    }
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build()
        .unwrap_or_else(|e| unreachable!("static SqlInfo table: {e}"))
});

/// One XDBC type row with the defaults that hold for every cxdb type.
fn xdbc(name: &str, data_type: XdbcDataType) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        nullable: Nullable::NullabilityNullable,
        searchable: Searchable::Full,
        local_type_name: Some(name.into()),
        sql_data_type: data_type,
        ..Default::default()
    }
}

/// The SQL types cxdb's columns and views produce, by Arrow type: Utf8
/// (VARCHAR), Int32, Int64, Float64, Boolean, Timestamp(µs, UTC), Date32.
static XDBC_TYPE_INFO: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let numeric = |name: &str, ty: XdbcDataType, size: i32| XdbcTypeInfo {
        column_size: Some(size),
        unsigned_attribute: Some(false),
        auto_increment: Some(false),
        num_prec_radix: Some(if matches!(ty, XdbcDataType::XdbcDouble) {
            2
        } else {
            10
        }),
        ..xdbc(name, ty)
    };
    b.append(numeric("BIGINT", XdbcDataType::XdbcBigint, 19));
    b.append(XdbcTypeInfo {
        column_size: Some(1),
        ..xdbc("BOOLEAN", XdbcDataType::XdbcBit)
    });
    b.append(numeric("INTEGER", XdbcDataType::XdbcInteger, 10));
    b.append(numeric("DOUBLE", XdbcDataType::XdbcDouble, 53));
    b.append(XdbcTypeInfo {
        column_size: Some(i32::MAX),
        literal_prefix: Some("'".into()),
        literal_suffix: Some("'".into()),
        case_sensitive: true,
        ..xdbc("VARCHAR", XdbcDataType::XdbcVarchar)
    });
    b.append(XdbcTypeInfo {
        column_size: Some(10),
        literal_prefix: Some("DATE '".into()),
        literal_suffix: Some("'".into()),
        // ODBC's SQL_CODE_DATE (1; FlightSql.proto's XDBC_SUBCODE_DATE alias).
        datetime_subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
        sql_data_type: XdbcDataType::XdbcDatetime,
        ..xdbc("DATE", XdbcDataType::XdbcDate)
    });
    b.append(XdbcTypeInfo {
        column_size: Some(32),
        literal_prefix: Some("TIMESTAMP '".into()),
        literal_suffix: Some("'".into()),
        minimum_scale: Some(6),
        maximum_scale: Some(6),
        datetime_subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        sql_data_type: XdbcDataType::XdbcDatetime,
        ..xdbc("TIMESTAMP", XdbcDataType::XdbcTimestamp)
    });
    b.build()
        .unwrap_or_else(|e| unreachable!("static XDBC type table: {e}"))
});

/// `GetPrimaryKeys` (FlightSql.proto).
pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// `GetExportedKeys`, `GetImportedKeys`, `GetCrossReference` (FlightSql.proto).
pub(crate) fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}
