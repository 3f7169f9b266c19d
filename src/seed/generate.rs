//! Deterministic generation of the Zava Retail sample data.
//!
//! Everything derives from one `u64` seed through ChaCha8 streams, one stream
//! per table, so the same seed and scale always give the same rows. Money is
//! computed in integer cents, so `total_amount` is exactly
//! `quantity * unit_price - discount_amount` with
//! `discount_amount = round(quantity * unit_price * discount_percent / 100, 2)`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration, PrimitiveDateTime, Time, Weekday, macros::date};

use super::assortment::{Assortment, Cents, Product};
use super::names::{FIRST_NAMES, LAST_NAMES};

/// How much sample data to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// About 500 customers and 2,500 orders: for per-test databases.
    Tiny,
    /// About 10,000 customers and 50,000 orders.
    Small,
    /// The original sample's scale: 100,000 customers, 200,000 orders.
    Full,
}

impl Scale {
    fn customers(self) -> usize {
        match self {
            Scale::Tiny => 500,
            Scale::Small => 10_000,
            Scale::Full => 100_000,
        }
    }

    fn orders(self) -> usize {
        match self {
            Scale::Tiny => 2_500,
            Scale::Small => 50_000,
            Scale::Full => 200_000,
        }
    }
}

/// The first and last day of the generated order history.
pub const FIRST_ORDER_DATE: Date = date!(2020 - 01 - 01);
pub const LAST_ORDER_DATE: Date = date!(2025 - 12 - 31);

/// A Zava store: name, manager id, online flag, share of orders, area code.
pub struct StoreSpec {
    pub name: &'static str,
    pub rls_user_id: &'static str,
    pub is_online: bool,
    /// `region_id`: an index into [`REGIONS`], plus one.
    pub region_id: i32,
    weight: f64,
    area_code: u16,
}

/// A region, and the ids of the regional managers who see its stores.
pub struct RegionSpec {
    pub name: &'static str,
    pub managers: &'static [&'static str],
}

const WEST: i32 = 1;
const EAST: i32 = 2;
const ONLINE: i32 = 3;

/// The regional manager of the East region (Bellevue, Spokane, Redmond,
/// Kirkland).
pub const EAST_REGIONAL_MANAGER_ID: &str = "7c3e5a9b-2d4f-4e6a-8b1c-3d5e7f9a1b2c";

/// The regions, in `region_id` order: West (Seattle, Tacoma, Everett), East
/// (Bellevue, Spokane, Redmond, Kirkland), and the online store on its own.
pub const REGIONS: [RegionSpec; 3] = [
    RegionSpec {
        name: "West",
        managers: &[],
    },
    RegionSpec {
        name: "East",
        managers: &[EAST_REGIONAL_MANAGER_ID],
    },
    RegionSpec {
        name: "Online",
        managers: &[],
    },
];

/// The eight stores, in `store_id` order. Seattle, Redmond and Online keep the
/// manager ids of the original sample.
pub const STORES: [StoreSpec; 8] = [
    store(
        "Zava Retail Seattle",
        "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        WEST,
        0.18,
        206,
    ),
    store(
        "Zava Retail Bellevue",
        "3b9e1f4a-6c2d-4f8e-9a7b-5d1c3e9f2a6b",
        EAST,
        0.12,
        425,
    ),
    store(
        "Zava Retail Tacoma",
        "8d4c2b1a-9e7f-4a6b-8c5d-1e3f5a7b9c2d",
        WEST,
        0.10,
        253,
    ),
    store(
        "Zava Retail Spokane",
        "5a7c9e1b-3d5f-4b8a-9c2e-6f8a1b3c5d7e",
        EAST,
        0.07,
        509,
    ),
    store(
        "Zava Retail Everett",
        "c2e4a6b8-1d3f-4e5a-8b7c-9d1e3f5a7b9c",
        WEST,
        0.09,
        425,
    ),
    store(
        "Zava Retail Redmond",
        "e7f8a9b0-c1d2-3e4f-5678-90abcdef1234",
        EAST,
        0.11,
        425,
    ),
    store(
        "Zava Retail Kirkland",
        "9f1b3d5e-7a9c-4d2e-8f6a-2b4c6d8e1f3a",
        EAST,
        0.10,
        425,
    ),
    StoreSpec {
        name: "Zava Retail Online",
        rls_user_id: "2f4e6d8c-1a3b-5c7e-9f0a-b2d4f6e8c0a2",
        is_online: true,
        region_id: ONLINE,
        weight: 0.23,
        area_code: 206,
    },
];

const fn store(
    name: &'static str,
    id: &'static str,
    region_id: i32,
    weight: f64,
    area_code: u16,
) -> StoreSpec {
    StoreSpec {
        name,
        rls_user_id: id,
        is_online: false,
        region_id,
        weight,
        area_code,
    }
}

/// Order volume by month (January first): spring projects, holiday gifts.
const MONTH_VOLUME: [f64; 12] = [
    0.75, 0.80, 1.00, 1.20, 1.30, 1.25, 1.15, 1.05, 0.95, 0.90, 1.00, 1.15,
];
/// Year-over-year growth of order volume.
const YEARLY_GROWTH: f64 = 1.10;

/// Extra seasonality for some categories (by name), January first.
fn category_season(category: &str) -> [f64; 12] {
    match category {
        "Garden & Outdoor" => [
            0.35, 0.45, 0.9, 1.8, 2.2, 2.0, 1.6, 1.3, 0.9, 0.6, 0.4, 0.35,
        ],
        "Paint & Supplies" => [
            0.7, 0.75, 0.95, 1.2, 1.3, 1.3, 1.25, 1.15, 1.0, 0.9, 0.8, 0.7,
        ],
        "Lumber & Building Materials" => [
            0.7, 0.75, 1.0, 1.2, 1.3, 1.3, 1.25, 1.2, 1.05, 0.95, 0.8, 0.65,
        ],
        "Electrical" => [
            1.0, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 1.0, 1.1, 1.3, 1.5,
        ],
        "Power Tools" => [
            0.8, 0.85, 0.95, 1.0, 1.0, 1.3, 1.0, 0.95, 0.95, 1.0, 1.3, 1.7,
        ],
        _ => [1.0; 12],
    }
}

pub struct Store {
    pub id: i32,
    pub spec: &'static StoreSpec,
}

pub struct Customer {
    pub id: i32,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub phone: String,
    pub primary_store_id: i32,
    pub created_at: PrimitiveDateTime,
}

impl Customer {
    pub fn email(&self) -> String {
        format!(
            "{}.{}{}@example.com",
            self.first_name.to_ascii_lowercase(),
            self.last_name.to_ascii_lowercase(),
            self.id
        )
    }
}

pub struct Order {
    pub id: i32,
    pub customer_id: i32,
    pub store_id: i32,
    pub order_date: Date,
}

pub struct OrderItem {
    pub id: i32,
    pub order_id: i32,
    pub store_id: i32,
    pub product_id: i32,
    pub quantity: i32,
    pub unit_price: Cents,
    pub discount_percent: i32,
    pub discount_amount: Cents,
    pub total_amount: Cents,
}

pub struct Inventory {
    pub store_id: i32,
    pub product_id: i32,
    pub stock_level: i32,
}

/// A complete, consistent data set, ready to load.
pub struct Dataset {
    pub assortment: Assortment,
    pub stores: Vec<Store>,
    pub customers: Vec<Customer>,
    pub orders: Vec<Order>,
    pub order_items: Vec<OrderItem>,
    pub inventory: Vec<Inventory>,
}

impl Dataset {
    pub fn row_count(&self) -> usize {
        REGIONS.len()
            + REGIONS.iter().map(|r| r.managers.len()).sum::<usize>()
            + self.stores.len()
            + self.assortment.categories.len()
            + self.assortment.product_types.len()
            + self.assortment.products.len()
            + self.customers.len()
            + self.orders.len()
            + self.order_items.len()
            + self.inventory.len()
    }
}

/// The independent random streams, one per table.
#[derive(Clone, Copy)]
enum Stream {
    Customers = 1,
    Orders = 2,
    Items = 3,
    Inventory = 4,
    Popularity = 5,
}

fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// Picks an index with probability proportional to its weight, given the
/// running sums of the weights.
fn pick(rng: &mut ChaCha8Rng, cumulative: &[f64]) -> usize {
    let total = *cumulative.last().expect("weights are not empty");
    let target = rng.random::<f64>() * total;
    cumulative
        .partition_point(|&sum| sum <= target)
        .min(cumulative.len() - 1)
}

fn running_sums(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    weights
        .into_iter()
        .scan(0.0, |sum, w| {
            *sum += w;
            Some(*sum)
        })
        .collect()
}

pub fn generate(assortment: Assortment, scale: Scale, seed: u64) -> Dataset {
    let stores: Vec<Store> = STORES
        .iter()
        .enumerate()
        .map(|(i, spec)| Store {
            id: i as i32 + 1,
            spec,
        })
        .collect();
    let store_sums = running_sums(STORES.iter().map(|s| s.weight));

    // Customers belong to a primary store, in proportion to store traffic.
    let mut rng_customers = rng(seed, Stream::Customers);
    let mut customers: Vec<Customer> = (0..scale.customers())
        .map(|i| {
            let store = pick(&mut rng_customers, &store_sums);
            Customer {
                id: i as i32 + 1,
                first_name: FIRST_NAMES[rng_customers.random_range(0..FIRST_NAMES.len())],
                last_name: LAST_NAMES[rng_customers.random_range(0..LAST_NAMES.len())],
                phone: format!(
                    "({}) 555-{:04}",
                    STORES[store].area_code,
                    rng_customers.random_range(100..200)
                ),
                primary_store_id: store as i32 + 1,
                // replaced below once the customer's first order is known
                created_at: PrimitiveDateTime::new(FIRST_ORDER_DATE, Time::MIDNIGHT),
            }
        })
        .collect();
    let mut customers_by_store: Vec<Vec<usize>> = vec![Vec::new(); STORES.len()];
    for (index, customer) in customers.iter().enumerate() {
        customers_by_store[(customer.primary_store_id - 1) as usize].push(index);
    }

    let orders = generate_orders(scale, seed, &store_sums, &customers_by_store);
    let order_items = generate_items(&assortment, seed, &orders);

    // A customer signs up some time before their first order.
    let mut first_order: Vec<Option<Date>> = vec![None; customers.len()];
    for order in &orders {
        let slot = &mut first_order[(order.customer_id - 1) as usize];
        if slot.is_none() {
            *slot = Some(order.order_date);
        }
    }
    let history_days = (LAST_ORDER_DATE - FIRST_ORDER_DATE).whole_days();
    for (customer, first) in customers.iter_mut().zip(first_order) {
        let day = match first {
            Some(date) => date - Duration::days(rng_customers.random_range(1..=400)),
            None => FIRST_ORDER_DATE + Duration::days(rng_customers.random_range(0..=history_days)),
        };
        let time = Time::from_hms(
            rng_customers.random_range(8..21),
            rng_customers.random_range(0..60),
            rng_customers.random_range(0..60),
        )
        .expect("valid time of day");
        customer.created_at = PrimitiveDateTime::new(day, time);
    }

    let inventory = generate_inventory(&assortment, seed);
    Dataset {
        assortment,
        stores,
        customers,
        orders,
        order_items,
        inventory,
    }
}

/// Orders spread over the history by month, weekday and growth, at stores in
/// proportion to their weight, mostly by customers of that store.
fn generate_orders(
    scale: Scale,
    seed: u64,
    store_sums: &[f64],
    customers_by_store: &[Vec<usize>],
) -> Vec<Order> {
    let mut rng = rng(seed, Stream::Orders);
    let days: Vec<Date> = std::iter::successors(Some(FIRST_ORDER_DATE), |d| d.next_day())
        .take_while(|d| *d <= LAST_ORDER_DATE)
        .collect();
    let weights: Vec<f64> = days
        .iter()
        .map(|day| {
            let weekday = match day.weekday() {
                Weekday::Saturday => 1.35,
                Weekday::Sunday => 1.2,
                _ => 0.9,
            };
            let years = f64::from(day.year() - FIRST_ORDER_DATE.year());
            let noise = rng.random_range(0.8..1.2);
            MONTH_VOLUME[day.month() as usize - 1] * weekday * YEARLY_GROWTH.powf(years) * noise
        })
        .collect();
    let total_weight: f64 = weights.iter().sum();
    let target = scale.orders() as f64;
    let all_customers: usize = customers_by_store.iter().map(Vec::len).sum();

    let mut orders = Vec::with_capacity(scale.orders());
    let mut cumulative = 0.0;
    for (day, weight) in days.iter().zip(&weights) {
        // Rounding the running total hits the target count exactly.
        let before = (cumulative * target / total_weight).round() as usize;
        cumulative += weight;
        let after = (cumulative * target / total_weight).round() as usize;
        for _ in before..after {
            let store = pick(&mut rng, store_sums);
            let locals = &customers_by_store[store];
            let customer = if !locals.is_empty() && rng.random_bool(0.85) {
                locals[rng.random_range(0..locals.len())]
            } else {
                rng.random_range(0..all_customers)
            };
            orders.push(Order {
                id: orders.len() as i32 + 1,
                customer_id: customer as i32 + 1,
                store_id: store as i32 + 1,
                order_date: *day,
            });
        }
    }
    orders
}

fn generate_items(assortment: &Assortment, seed: u64, orders: &[Order]) -> Vec<OrderItem> {
    // Product popularity: a long tail, cheaper products sell more often.
    let mut rng_popularity = rng(seed, Stream::Popularity);
    let popularity: Vec<f64> = assortment
        .products
        .iter()
        .map(|p| {
            let appeal = rng_popularity.random_range(0.2..1.0f64).powi(2);
            let price = p.base_price.0 as f64 / 100.0;
            appeal / (1.0 + price / 40.0).sqrt()
        })
        .collect();
    // One product distribution per month, with category seasonality.
    let by_month: Vec<Vec<f64>> =
        (0..12)
            .map(|month| {
                running_sums(assortment.products.iter().zip(&popularity).map(|(p, w)| {
                    w * category_season(assortment.category_name(p.category_id))[month]
                }))
            })
            .collect();
    const ITEMS_PER_ORDER: [f64; 5] = [0.35, 0.28, 0.18, 0.11, 0.08];
    let items_per_order = running_sums(ITEMS_PER_ORDER);
    const DISCOUNTS: [i32; 5] = [5, 10, 15, 20, 25];

    let mut rng = rng(seed, Stream::Items);
    let mut items = Vec::with_capacity(orders.len() * 23 / 10);
    let mut in_order: Vec<usize> = Vec::with_capacity(ITEMS_PER_ORDER.len());
    for order in orders {
        let month = &by_month[order.order_date.month() as usize - 1];
        let count = pick(&mut rng, &items_per_order) + 1;
        in_order.clear();
        for _ in 0..count {
            let product_index = pick(&mut rng, month);
            if in_order.contains(&product_index) {
                continue; // one line per product in an order
            }
            in_order.push(product_index);
            let product = &assortment.products[product_index];
            let quantity = quantity_for(&mut rng, assortment, product);
            let discount_percent = if rng.random_bool(0.18) {
                DISCOUNTS[rng.random_range(0..DISCOUNTS.len())]
            } else {
                0
            };
            let gross = product.base_price.0 * i64::from(quantity);
            // round half up to the cent
            let discount = (gross * i64::from(discount_percent) + 50) / 100;
            items.push(OrderItem {
                id: items.len() as i32 + 1,
                order_id: order.id,
                store_id: order.store_id,
                product_id: product.id,
                quantity,
                unit_price: product.base_price,
                discount_percent,
                discount_amount: Cents(discount),
                total_amount: Cents(gross - discount),
            });
        }
    }
    items
}

fn quantity_for(rng: &mut ChaCha8Rng, assortment: &Assortment, product: &Product) -> i32 {
    match assortment.category_name(product.category_id) {
        // studs, sheets and fastener packs go by the armful
        "Lumber & Building Materials" | "Fasteners & Hardware" => rng.random_range(1..=12),
        _ => match rng.random_range(0..100) {
            0..70 => 1,
            70..92 => 2,
            _ => 3,
        },
    }
}

fn generate_inventory(assortment: &Assortment, seed: u64) -> Vec<Inventory> {
    let mut rng = rng(seed, Stream::Inventory);
    let mut inventory = Vec::with_capacity(STORES.len() * assortment.products.len());
    for (store_index, spec) in STORES.iter().enumerate() {
        // the online store ships from a warehouse
        let depth = if spec.is_online { 4 } else { 1 };
        for product in &assortment.products {
            let stock_level = if rng.random_bool(0.07) {
                rng.random_range(0..10) // running low
            } else {
                rng.random_range(10..=150) * depth
            };
            inventory.push(Inventory {
                store_id: store_index as i32 + 1,
                product_id: product.id,
                stock_level,
            });
        }
    }
    inventory
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(seed: u64) -> Dataset {
        generate(Assortment::bundled().unwrap(), Scale::Tiny, seed)
    }

    fn fingerprint(data: &Dataset) -> Vec<(i32, i32, i32, i64)> {
        data.order_items
            .iter()
            .map(|i| (i.order_id, i.product_id, i.quantity, i.total_amount.0))
            .collect()
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        assert_eq!(fingerprint(&tiny(7)), fingerprint(&tiny(7)));
        assert_ne!(fingerprint(&tiny(7)), fingerprint(&tiny(8)));
    }

    #[test]
    fn order_counts_and_dates_match_the_scale() {
        let data = tiny(42);
        assert_eq!(data.orders.len(), Scale::Tiny.orders());
        assert_eq!(data.customers.len(), Scale::Tiny.customers());
        assert!(
            data.orders
                .windows(2)
                .all(|w| w[0].order_date <= w[1].order_date)
        );
        assert_eq!(data.orders.first().unwrap().order_date.year(), 2020);
        assert_eq!(data.orders.last().unwrap().order_date.year(), 2025);
    }

    #[test]
    fn totals_are_consistent_to_the_cent() {
        for item in &tiny(42).order_items {
            let gross = item.unit_price.0 * i64::from(item.quantity);
            let discount = (gross * i64::from(item.discount_percent) + 50) / 100;
            assert_eq!(item.discount_amount.0, discount);
            assert_eq!(item.total_amount.0, gross - discount);
        }
    }

    #[test]
    fn customers_sign_up_before_their_first_order() {
        let data = tiny(42);
        for order in &data.orders {
            let customer = &data.customers[(order.customer_id - 1) as usize];
            assert!(customer.created_at.date() < order.order_date);
        }
    }

    #[test]
    fn garden_sells_more_in_spring_than_in_winter() {
        let data = generate(Assortment::bundled().unwrap(), Scale::Small, 42);
        let assortment = &data.assortment;
        let garden = assortment
            .categories
            .iter()
            .find(|c| c.name == "Garden & Outdoor")
            .expect("the assortment has a garden category")
            .id;
        let mut by_month = [0usize; 12];
        let mut all_by_month = [0usize; 12];
        for item in &data.order_items {
            let order = &data.orders[(item.order_id - 1) as usize];
            let month = order.order_date.month() as usize - 1;
            all_by_month[month] += 1;
            if assortment.products[(item.product_id - 1) as usize].category_id == garden {
                by_month[month] += 1;
            }
        }
        let share = |m: usize| by_month[m] as f64 / all_by_month[m] as f64;
        assert!(
            share(4) > 2.0 * share(0),
            "May {} vs January {}",
            share(4),
            share(0)
        );
    }

    #[test]
    fn online_is_the_only_online_store_and_ids_are_unique() {
        assert_eq!(STORES.iter().filter(|s| s.is_online).count(), 1);
        assert!(STORES[7].is_online);
        let mut ids: Vec<_> = STORES.iter().map(|s| s.rls_user_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), STORES.len());
    }
}
