//! Every node type of PostgreSQL's parse tree (as libpg_query 18 reports
//! it), classified once. The `match` below names every variant of
//! `pg_query::NodeEnum` and has no catch-all arm, so a parser upgrade that
//! adds a node type does not compile until someone classifies it; and a
//! node the walk meets whose name is not here is refused.

/// What the policy does with a node type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeClass {
    /// Reaches no function, type or relation by itself; its children are
    /// walked.
    Structure,
    /// May resolve to a function (a call, a field selection that can name
    /// one, an operator, a type's cast or input function), a relation or a
    /// WITH query: checked against the allow-lists.
    Reaches,
    /// No business in a query (statements other than SELECT and EXPLAIN,
    /// writes, locking, XML, parameters), or only ever produced by parse
    /// analysis, never by the raw parser: refused wherever it appears.
    Refused,
}

macro_rules! classified {
    ($($class:ident: [$($name:ident),* $(,)?])*) => {
        /// The name of every node type, as `NodeEnum` spells it.
        #[cfg(any(test, feature = "test-support"))]
        pub const ALL_NODE_NAMES: &[&str] = &[$($(stringify!($name),)*)*];

        /// The class of a node type; a name that is not a node type is refused.
        #[cfg(any(test, feature = "test-support"))]
        pub fn class_of(name: &str) -> NodeClass {
            match name {
                $($(stringify!($name))|* => NodeClass::$class,)*
                _ => NodeClass::Refused,
            }
        }

        /// Does not compile unless every variant of `NodeEnum` is above,
        /// once (a repeated one is an unreachable pattern, an error under
        /// the project's lints).
        fn exhaustive(node: &pg_query::NodeEnum) -> NodeClass {
            match node {
                $($(pg_query::NodeEnum::$name(_))|* => NodeClass::$class,)*
            }
        }
        const _: fn(&pg_query::NodeEnum) -> NodeClass = exhaustive;

        /// Every node type with its class and an empty node of it.
        pub fn every_node() -> Vec<(&'static str, NodeClass, pg_query::NodeEnum)> {
            vec![$($((
                stringify!($name),
                NodeClass::$class,
                pg_query::NodeEnum::$name(Default::default()),
            ),)*)*]
        }
    };
}

classified! {
    Reaches: [
        FuncCall, ColumnRef, AIndirection, AExpr, SubLink, SortBy, TypeName, RangeVar,
        CommonTableExpr, RangeTableSample, SqlvalueFunction,
    ]
    Structure: [
        RawStmt, SelectStmt, ExplainStmt, DefElem, ResTarget, Alias, AConst, AStar, AIndices,
        AArrayExpr, TypeCast, BoolExpr, NullTest, BooleanTest, CaseExpr, CaseWhen, CoalesceExpr,
        MinMaxExpr, RowExpr, CollateClause, GroupingFunc, GroupingSet,
        WindowDef, RangeSubselect, RangeFunction, JoinExpr, WithClause, CtesearchClause,
        CtecycleClause, ColumnDef, NamedArgExpr, Integer, Float, Boolean, String, BitString,
        List, IntList, OidList, JsonFormat, JsonReturning, JsonValueExpr, JsonOutput,
        JsonArgument, JsonFuncExpr, JsonTablePathSpec, JsonTable, JsonTableColumn,
        JsonKeyValue, JsonParseExpr, JsonScalarExpr, JsonSerializeExpr, JsonObjectConstructor,
        JsonArrayConstructor, JsonArrayQueryConstructor, JsonAggConstructor, JsonObjectAgg,
        JsonArrayAgg, JsonIsPredicate, JsonBehavior,
    ]
    Refused: [
        // writes, locking, XML, parameters and the like inside a SELECT
        IntoClause, LockingClause, ParamRef, MultiAssignRef, SetToDefault, CurrentOfExpr,
        XmlSerialize, RangeTableFunc, RangeTableFuncCol, TableLikeClause, IndexElem,
        PartitionElem, PartitionSpec, PartitionBoundSpec, PartitionRangeDatum, PartitionCmd,
        RoleSpec, AccessPriv, ObjectWithArgs, Constraint, FunctionParameter, StatsElem,
        VacuumRelation, PublicationTable, PublicationObjSpec, CreateOpClassItem,
        AlterTableCmd, AtalterConstraint, InferClause, OnConflictClause, MergeWhenClause,
        ReturningOption, ReturningClause, TriggerTransition, InlineCodeBlock, CallContext,
        // produced by parse analysis or the planner, never by the raw parser
        TableFunc, Var, Param, Aggref, WindowFunc, WindowFuncRunCondition, MergeSupportFunc,
        SubscriptingRef, FuncExpr, OpExpr, DistinctExpr, NullIfExpr, ScalarArrayOpExpr,
        SubPlan, AlternativeSubPlan, FieldSelect, FieldStore, RelabelType, CoerceViaIo,
        ArrayCoerceExpr, ConvertRowtypeExpr, CollateExpr, CaseTestExpr, ArrayExpr,
        RowCompareExpr, XmlExpr, JsonConstructorExpr, JsonExpr, JsonTablePath,
        JsonTablePathScan, JsonTableSiblingJoin, MergeAction, CoerceToDomain,
        CoerceToDomainValue, NextValueExpr, InferenceElem, ReturningExpr, TargetEntry,
        RangeTblRef, FromExpr, OnConflictExpr, Query, RangeTblEntry, RtepermissionInfo,
        RangeTblFunction, TableSampleClause, WithCheckOption, SortGroupClause, WindowClause,
        RowMarkClause, SetOperationStmt,
        // statements other than SELECT and EXPLAIN
        InsertStmt, DeleteStmt, UpdateStmt, MergeStmt, ReturnStmt, PlassignStmt,
        CreateSchemaStmt, AlterTableStmt, ReplicaIdentityStmt, AlterCollationStmt,
        AlterDomainStmt, GrantStmt, GrantRoleStmt, AlterDefaultPrivilegesStmt, CopyStmt,
        VariableSetStmt, VariableShowStmt, CreateStmt, CreateTableSpaceStmt,
        DropTableSpaceStmt, AlterTableSpaceOptionsStmt, AlterTableMoveAllStmt,
        CreateExtensionStmt, AlterExtensionStmt, AlterExtensionContentsStmt, CreateFdwStmt,
        AlterFdwStmt, CreateForeignServerStmt, AlterForeignServerStmt, CreateForeignTableStmt,
        CreateUserMappingStmt, AlterUserMappingStmt, DropUserMappingStmt,
        ImportForeignSchemaStmt, CreatePolicyStmt, AlterPolicyStmt, CreateAmStmt,
        CreateTrigStmt, CreateEventTrigStmt, AlterEventTrigStmt, CreatePlangStmt,
        CreateRoleStmt, AlterRoleStmt, AlterRoleSetStmt, DropRoleStmt, CreateSeqStmt,
        AlterSeqStmt, DefineStmt, CreateDomainStmt, CreateOpClassStmt, CreateOpFamilyStmt,
        AlterOpFamilyStmt, DropStmt, TruncateStmt, CommentStmt, SecLabelStmt,
        DeclareCursorStmt, ClosePortalStmt, FetchStmt, IndexStmt, CreateStatsStmt,
        AlterStatsStmt, CreateFunctionStmt, AlterFunctionStmt, DoStmt, CallStmt, RenameStmt,
        AlterObjectDependsStmt, AlterObjectSchemaStmt, AlterOwnerStmt, AlterOperatorStmt,
        AlterTypeStmt, RuleStmt, NotifyStmt, ListenStmt, UnlistenStmt, TransactionStmt,
        CompositeTypeStmt, CreateEnumStmt, CreateRangeStmt, AlterEnumStmt, ViewStmt, LoadStmt,
        CreatedbStmt, AlterDatabaseStmt, AlterDatabaseRefreshCollStmt, AlterDatabaseSetStmt,
        DropdbStmt, AlterSystemStmt, ClusterStmt, VacuumStmt, CreateTableAsStmt,
        RefreshMatViewStmt, CheckPointStmt, DiscardStmt, LockStmt, ConstraintsSetStmt,
        ReindexStmt, CreateConversionStmt, CreateCastStmt, CreateTransformStmt, PrepareStmt,
        ExecuteStmt, DeallocateStmt, DropOwnedStmt, ReassignOwnedStmt, AlterTsdictionaryStmt,
        AlterTsconfigurationStmt, CreatePublicationStmt, AlterPublicationStmt,
        CreateSubscriptionStmt, AlterSubscriptionStmt, DropSubscriptionStmt,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_type_of_the_parser_is_classified_once() {
        // `exhaustive` proves at compile time that every NodeEnum variant
        // is listed; a repeated one would be an unreachable pattern
        let unique: std::collections::BTreeSet<_> = ALL_NODE_NAMES.iter().collect();
        assert_eq!(unique.len(), ALL_NODE_NAMES.len());
        assert!(ALL_NODE_NAMES.len() >= 271, "{}", ALL_NODE_NAMES.len());
        assert_eq!(class_of("SomeFutureNode"), NodeClass::Refused);
    }
}
