use sqlmcp::seed::{self, Scale, SeedOptions, TableChecksum};

use crate::helpers::{HEAD_OFFICE, TestDb, query_as, sqlmcp, stderr, stdout};

fn options(seed: u64) -> SeedOptions {
    SeedOptions {
        scale: Scale::Tiny,
        seed,
        if_seeded: seed::IfSeeded::Refuse,
        progress: false,
    }
}

async fn seeded_checksums(seed: u64) -> Vec<TableChecksum> {
    let db = TestDb::migrated().await;
    let mut client = db.owner().await;
    seed::seed(&mut client, options(seed)).await.expect("seed");
    seed::checksums(&mut client).await.unwrap()
}

#[tokio::test]
async fn the_same_seed_gives_the_same_rows() {
    let (a, b, other) = tokio::join!(
        seeded_checksums(7),
        seeded_checksums(7),
        seeded_checksums(8)
    );
    assert_eq!(a, b);
    for sum in &a {
        if sum.table != "retail.product_description_embeddings" {
            assert!(sum.rows > 0, "{} is empty", sum.table);
        }
    }
    // the reference data is the same, the generated data is not
    let differs: Vec<_> = a
        .iter()
        .zip(&other)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.table)
        .collect();
    assert_eq!(
        differs,
        [
            "retail.customers",
            "retail.orders",
            "retail.order_items",
            "retail.inventory"
        ]
    );
}

#[tokio::test]
async fn the_cli_seeds_and_prints_checksums_then_refuses_to_seed_again() {
    let db = TestDb::migrated().await;
    let url = db.url();
    let first = sqlmcp(
        &["seed", "--scale", "tiny", "--seed", "7"],
        &[("DATABASE_URL", &url)],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let printed = stdout(&first);
    let checksums = seed::checksums(&mut *db.owner().await).await.unwrap();
    for sum in &checksums {
        assert!(
            printed.contains(&format!("{:<40} {:>9}  {}", sum.table, sum.rows, sum.md5)),
            "{} not reported in\n{printed}",
            sum.table
        );
    }

    let again = sqlmcp(&["seed", "--scale", "tiny"], &[("DATABASE_URL", &url)]);
    assert!(!again.status.success());
    let err = stderr(&again);
    assert!(
        err.contains("already holds sample data; pass --force"),
        "{err}"
    );
    assert_eq!(
        seed::checksums(&mut *db.owner().await).await.unwrap(),
        checksums,
        "refusal changed nothing"
    );

    let kept = sqlmcp(
        &["seed", "--scale", "tiny", "--seed", "9", "--if-empty"],
        &[("DATABASE_URL", &url)],
    );
    assert!(kept.status.success(), "{}", stderr(&kept));
    assert!(stdout(&kept).contains("left as it is"));
    assert_eq!(
        seed::checksums(&mut *db.owner().await).await.unwrap(),
        checksums,
        "--if-empty changed nothing"
    );

    let forced = sqlmcp(
        &["seed", "--scale", "tiny", "--seed", "7", "--force"],
        &[("DATABASE_URL", &url)],
    );
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(
        seed::checksums(&mut *db.owner().await).await.unwrap(),
        checksums,
        "re-seeding with the same seed replaces the data with identical rows"
    );
}

#[tokio::test]
async fn seeding_an_unmigrated_database_says_to_migrate_first() {
    let db = TestDb::empty().await;
    let err = seed::seed(&mut *db.owner().await, options(1))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("run `sqlmcp migrate` first"),
        "{err}"
    );
}

#[tokio::test]
async fn totals_are_consistent_with_quantity_price_and_discount() {
    let db = TestDb::seeded().await;
    let mut client = db.owner().await;
    let row = &query_as(
        &mut client,
        Some(HEAD_OFFICE),
        "SELECT count(*), \
                count(*) FILTER (WHERE discount_amount <> round(quantity * unit_price * discount_percent / 100.0, 2) \
                                    OR total_amount <> quantity * unit_price - discount_amount), \
                count(*) FILTER (WHERE discount_percent > 0), \
                count(*) FILTER (WHERE oi.unit_price <> p.base_price) \
         FROM retail.order_items oi JOIN retail.products p USING (product_id)",
    )
    .await
    .unwrap()[0];
    let (items, inconsistent, discounted, mispriced): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(items > 5_000, "{items} order items");
    assert_eq!(inconsistent, 0);
    assert_eq!(mispriced, 0);
    assert!(
        discounted > items / 20,
        "some items are discounted: {discounted}"
    );
}

#[tokio::test]
async fn stores_and_assortment_match_the_contract() {
    let db = TestDb::seeded().await;
    let client = db.owner().await;
    let stores: Vec<(i32, String, String, bool)> = client
        .query(
            "SELECT store_id, store_name::text, rls_user_id::text, is_online \
             FROM retail.stores ORDER BY store_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let names: Vec<&str> = stores.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(
        names,
        [
            "Zava Retail Seattle",
            "Zava Retail Bellevue",
            "Zava Retail Tacoma",
            "Zava Retail Spokane",
            "Zava Retail Everett",
            "Zava Retail Redmond",
            "Zava Retail Kirkland",
            "Zava Retail Online",
        ]
    );
    let id_of = |name: &str| stores.iter().find(|s| s.1 == name).unwrap().2.clone();
    assert_eq!(id_of("Zava Retail Seattle"), crate::helpers::SEATTLE);
    assert_eq!(id_of("Zava Retail Redmond"), crate::helpers::REDMOND);
    assert_eq!(id_of("Zava Retail Online"), crate::helpers::ONLINE);
    let online: Vec<&str> = stores
        .iter()
        .filter(|s| s.3)
        .map(|s| s.1.as_str())
        .collect();
    assert_eq!(online, ["Zava Retail Online"]);

    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM retail.categories), \
                    (SELECT count(*) FROM retail.products), \
                    (SELECT count(*) FROM retail.products \
                      WHERE base_price <= cost OR length(product_description) < 40 \
                         OR gross_margin_percent <> round((base_price - cost) / base_price * 100, 2)), \
                    (SELECT min(n) FROM (SELECT count(*) AS n FROM retail.product_types GROUP BY category_id) t)",
            &[],
        )
        .await
        .unwrap();
    let (categories, products, bad_products, min_types): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(categories >= 8);
    assert!(products >= 300);
    assert_eq!(bad_products, 0);
    assert!(min_types >= 3);
}

#[tokio::test]
async fn orders_span_several_years_with_seasonality_and_store_weights() {
    let db = TestDb::seeded().await;
    let mut client = db.owner().await;
    let row = &query_as(
        &mut client,
        Some(HEAD_OFFICE),
        "SELECT count(DISTINCT extract(year FROM order_date)), \
                count(*) FILTER (WHERE extract(month FROM order_date) = 5), \
                count(*) FILTER (WHERE extract(month FROM order_date) = 1), \
                count(*) FILTER (WHERE store_id = 8), \
                count(*) FILTER (WHERE store_id = 4), \
                (SELECT count(*) FROM retail.orders o JOIN retail.customers c USING (customer_id) \
                  WHERE c.created_at::date >= o.order_date) \
         FROM retail.orders",
    )
    .await
    .unwrap()[0];
    let (years, may, january, online, spokane, early): (i64, i64, i64, i64, i64, i64) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    );
    assert_eq!(years, 6);
    assert!(may > january * 13 / 10, "May {may} vs January {january}");
    assert!(online > spokane * 2, "Online {online} vs Spokane {spokane}");
    assert_eq!(early, 0, "no order predates its customer");
}
