#include "main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QComboBox>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QKeySequence>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QSettings>
#include <QStandardItemModel>
#include <QStatusBar>
#include <QTextBrowser>
#include <QToolBar>

#include "job_runner.h"
#include "plot_panel.h"

namespace decayfw::app {

MainWindow::MainWindow(QWidget* parent)
    : QMainWindow(parent), jobs_(new JobRunner(this)), summary_(new QTextBrowser(this)) {
  setWindowTitle(tr("decayfw analyzer"));
  setAcceptDrops(true);
  setDockOptions(QMainWindow::AllowTabbedDocks | QMainWindow::AnimatedDocks);
  generate_ = new GenerateView(models_, *jobs_, this);
  gates_ = new GatesView(models_, *jobs_, this);
  decay_ = new DecayView(models_, *jobs_, this);
  perplexity_ = new PerplexityView(models_, *jobs_, this);
  bench_ = new BenchmarkView(models_, *jobs_, this);
  summary_->setMinimumWidth(240);
  summary_->setHtml(tr("<p>Open a fairseq checkpoint (<b>File ▸ Open</b>, Ctrl+O, or drop a .pt file here).</p>"
                       "<p>Optionally open its attention base as the comparison model (Ctrl+Shift+O).</p>"));
  addView(tr("Model"), summary_, Qt::LeftDockWidgetArea);
  setCentralWidget(nullptr);
  QDockWidget* first = addView(tr("Generate"), generate_, Qt::RightDockWidgetArea);
  for (auto [title, view] : std::initializer_list<std::pair<QString, QWidget*>>{
           {tr("Gates"), gates_}, {tr("State decay"), decay_}, {tr("Perplexity"), perplexity_},
           {tr("Benchmark"), bench_}}) {
    tabifyDockWidget(first, addView(title, view, Qt::RightDockWidgetArea));
  }
  first->raise();

  for (View* v : std::initializer_list<View*>{generate_, gates_, decay_, perplexity_, bench_}) {
    connect(v, &View::failed, this, &MainWindow::showError);
  }
  connect(gates_, &GatesView::headViewsReady, decay_, &DecayView::show);
  connect(generate_, &GenerateView::generated, this, [this](const QString& text) {
    gates_->setText(text);
    perplexity_->setText(text);
  });

  // menus and shortcuts
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("&Open checkpoint…"), QKeySequence::Open, this, [this] {
    const QString p = QFileDialog::getOpenFileName(this, tr("Open a fairseq checkpoint"), QString(),
                                                   tr("Checkpoints (*.pt);;All files (*)"));
    if (!p.isEmpty()) openCheckpoint(p);
  });
  file->addAction(tr("Open &comparison (attention base)…"), QKeySequence(tr("Ctrl+Shift+O")), this, [this] {
    const QString p = QFileDialog::getOpenFileName(this, tr("Open the comparison checkpoint"), QString(),
                                                   tr("Checkpoints (*.pt);;All files (*)"));
    if (!p.isEmpty()) openCheckpoint(p, true);
  });
  recent_ = file->addMenu(tr("&Recent"));
  file->addAction(tr("&Export plot…"), QKeySequence(tr("Ctrl+E")), this, &MainWindow::exportCurrentPlot);
  file->addSeparator();
  file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);
  QMenu* run = menuBar()->addMenu(tr("&Run"));
  run->addAction(tr("&Generate"), QKeySequence(tr("Ctrl+G")), generate_, &GenerateView::generate);
  run->addAction(tr("&Stop"), QKeySequence(Qt::Key_Escape), jobs_, &JobRunner::cancel);
  run->addAction(tr("Compute &gates"), QKeySequence(tr("Ctrl+K")), gates_, &GatesView::compute);
  run->addAction(tr("&Score text"), QKeySequence(tr("Ctrl+P")), perplexity_, &PerplexityView::compute);
  run->addAction(tr("&Benchmark"), QKeySequence(tr("Ctrl+B")), bench_, &BenchmarkView::run);
  QMenu* view = menuBar()->addMenu(tr("&View"));
  for (QDockWidget* d : docks_) view->addAction(d->toggleViewAction());
  buildDeviceBox();

  busy_ = new QProgressBar(this);
  busy_->setRange(0, 0);
  busy_->setMaximumWidth(160);
  busy_->setVisible(false);
  status_ = new QLabel(this);
  statusBar()->addWidget(status_, 1);
  statusBar()->addPermanentWidget(busy_);
  connect(jobs_, &JobRunner::busyChanged, this, [this](bool busy, const QString& name) {
    busy_->setVisible(busy);
    device_box_->setEnabled(!busy);  // the device changes between jobs only
    status_->setText(busy ? name + "…" : tr("Ready"));
  });

  QSettings s;
  restoreGeometry(s.value("window/geometry").toByteArray());
  restoreState(s.value("window/state").toByteArray());
  // the saved device, if it can be used here (a GPU machine's choice opened on a CPU-only one: CPU)
  const QString saved = s.value("engine/device", "cpu").toString();
  QString fallback;
  try {
    device_ = QString::fromStdString(EngineSession::check_device(saved.toStdString()));
  } catch (const std::exception& e) {
    device_ = "cpu";
    fallback = tr("The saved device %1 cannot be used here (%2): using the CPU.").arg(saved, QString::fromStdString(e.what()));
  }
  showDeviceInBox();
  GenerationSettings g;
  g.max_new_tokens = s.value("generate/length", 40).toInt();
  g.sampling = s.value("generate/sample", false).toBool();
  g.temperature = s.value("generate/temperature", 1.0).toDouble();
  g.top_k = s.value("generate/top_k", 0).toInt();
  g.top_p = s.value("generate/top_p", 1.0).toDouble();
  g.seed = s.value("generate/seed", 1).toUInt();
  generate_->setSettings(g);
  rebuildRecentMenu();
  status_->setText(fallback.isEmpty() ? tr("Ready") : fallback);
}

MainWindow::~MainWindow() {
  jobs_->cancel();
  jobs_->wait();
}

QDockWidget* MainWindow::addView(const QString& title, QWidget* view, Qt::DockWidgetArea area) {
  auto* dock = new QDockWidget(title, this);
  dock->setObjectName("dock_" + title);  // for saveState
  dock->setWidget(view);
  addDockWidget(area, dock);
  docks_.push_back(dock);
  return dock;
}

void MainWindow::buildDeviceBox() {
  auto* bar = addToolBar(tr("Device"));
  bar->setObjectName("toolbar_device");  // for saveState
  auto* label = new QLabel(tr("Device "), bar);
  device_box_ = new QComboBox(bar);
  device_box_->setObjectName("device");
  device_box_->setToolTip(tr("Where the models run: loading, generation, gates, perplexity and the benchmark. "
                             "Changing it reloads the open models onto the new device."));
  device_box_->setSizeAdjustPolicy(QComboBox::AdjustToContents);
  auto* items = qobject_cast<QStandardItemModel*>(device_box_->model());
  for (const DeviceChoice& d : EngineSession::devices()) {
    const QString name = QString::fromStdString(d.name);
    const QString reason = QString::fromStdString(d.reason);
    device_box_->addItem(d.available ? QString::fromStdString(d.label) : tr("%1 (unavailable)").arg(QString::fromStdString(d.label)),
                         name);
    const int row = device_box_->count() - 1;
    if (!d.available) {
      if (items != nullptr) items->item(row)->setEnabled(false);  // shown, not selectable
      device_box_->setItemData(row, tr("Not available: %1").arg(reason), Qt::ToolTipRole);
    } else {
      device_box_->setItemData(row, name == "cpu" ? tr("Run on the CPU") : tr("Run on GPU %1").arg(name), Qt::ToolTipRole);
    }
  }
  label->setBuddy(device_box_);
  bar->addWidget(label);
  bar->addWidget(device_box_);
  connect(device_box_, QOverload<int>::of(&QComboBox::activated), this, [this](int row) {
    setDevice(device_box_->itemData(row).toString());
  });
}

void MainWindow::showDeviceInBox() {
  const int row = device_box_->findData(device_);
  if (row >= 0) device_box_->setCurrentIndex(row);
}

bool MainWindow::setDevice(const QString& name) {
  QString canonical;
  try {
    canonical = QString::fromStdString(EngineSession::check_device(name.toStdString()));
  } catch (const std::exception& e) {
    showDeviceInBox();
    showError(tr("Cannot use %1").arg(name), QString::fromStdString(e.what()));
    return false;
  }
  if (canonical == device_) {
    QSettings().setValue("engine/device", device_);  // chosen explicitly: kept, even over a saved one unusable here
    showDeviceInBox();
    return true;
  }
  if (!models_.primary && !models_.comparison) {
    if (jobs_->busy()) {  // a checkpoint is loading onto the current device
      showDeviceInBox();
      showError(tr("Busy"), tr("Wait for %1 to finish, or stop it (Esc), then change the device.").arg(jobs_->currentJob()));
      return false;
    }
    applyDevice(canonical);
    return true;
  }
  return reloadModels(canonical);
}

bool MainWindow::reloadModels(const QString& device) {
  QString canonical;
  try {
    canonical = QString::fromStdString(EngineSession::check_device(device.toStdString()));
  } catch (const std::exception& e) {
    showDeviceInBox();
    showError(tr("Cannot use %1").arg(device), QString::fromStdString(e.what()));
    return false;
  }
  // Every open model is reloaded onto the device in one job and they are swapped together: the
  // views never see one model on each device, and a failure keeps the old models on the old device.
  struct Reload {
    std::shared_ptr<EngineSession> primary, comparison;
  };
  auto result = std::make_shared<Reload>();
  const auto old_primary = models_.primary, old_comparison = models_.comparison;
  const std::string dev = canonical.toStdString();
  const bool started = jobs_->start(tr("Moving the models to %1").arg(canonical), [result, old_primary, old_comparison, dev]() -> QString {
    if (old_primary) result->primary = EngineSession::open(old_primary->summary().path, old_primary->summary().dictionary, dev);
    if (old_comparison) {
      result->comparison = EngineSession::open(old_comparison->summary().path, old_comparison->summary().dictionary, dev);
    }
    return {};
  }, [this, result, canonical](const QString& error) {
    if (!error.isEmpty()) {
      showDeviceInBox();
      showError(tr("Could not move the models to %1").arg(canonical), error);
      return;
    }
    models_.primary = result->primary;
    models_.comparison = result->comparison;
    applyDevice(canonical);
    modelsReplaced();
  });
  showDeviceInBox();  // until the reload is done the box shows where the models are
  if (!started) {
    showError(tr("Busy"), tr("Wait for %1 to finish, or stop it (Esc), then change the device.").arg(jobs_->currentJob()));
  }
  return started;
}

void MainWindow::applyDevice(const QString& name) {
  device_ = name;
  QSettings().setValue("engine/device", device_);
  showDeviceInBox();
  updateSummary();
  status_->setText(tr("Device: %1").arg(device_));
  emit deviceChanged(device_);
}

void MainWindow::modelsReplaced() {
  updateSummary();
  for (View* v : std::initializer_list<View*>{generate_, gates_, decay_, perplexity_, bench_}) v->modelsChanged();
}

void MainWindow::showView(QWidget* view) {
  for (QDockWidget* d : docks_) {
    if (d->widget() == view) {
      d->show();
      d->raise();
    }
  }
}

QString MainWindow::summaryText() const { return summary_->toPlainText(); }

void MainWindow::openCheckpoint(const QString& path, bool comparison, const QString& dictionary) {
  auto loaded = std::make_shared<std::shared_ptr<EngineSession>>();
  const std::string p = path.toStdString(), d = dictionary.toStdString(), dev = device_.toStdString();
  const bool started = jobs_->start(tr("Loading %1 on %2").arg(QFileInfo(path).fileName(), device_), [loaded, p, d, dev]() -> QString {
    *loaded = EngineSession::open(p, d, dev);
    return {};
  }, [this, loaded, path, comparison](const QString& error) {
    if (!error.isEmpty()) {
      if (error.startsWith("no dict.txt")) {  // not beside the checkpoint: let the user choose it
        const QString dict = QFileDialog::getOpenFileName(this, tr("Choose the dict.txt of %1").arg(path), QString(),
                                                          tr("fairseq dictionary (dict.txt *.txt)"));
        if (!dict.isEmpty()) return openCheckpoint(path, comparison, dict);
      }
      showError(tr("Could not open %1").arg(QFileInfo(path).fileName()), error);
      return;
    }
    (comparison ? models_.comparison : models_.primary) = *loaded;
    addRecent(path);
    modelsReplaced();
    emit modelLoaded(comparison);
  });
  if (!started) showError(tr("Busy"), tr("Wait for %1 to finish, or stop it (Esc).").arg(jobs_->currentJob()));
}

void MainWindow::updateSummary() {
  QString html;
  for (const auto& [title, s] : {std::pair<QString, std::shared_ptr<EngineSession>>{tr("Model"), models_.primary},
                                 {tr("Comparison"), models_.comparison}}) {
    if (!s) continue;
    const ModelSummary& m = s->summary();
    html += QString("<h3>%1</h3><table>").arg(title);
    auto row = [&](const QString& k, const QString& v) { html += "<tr><td><b>" + k + "</b></td><td>" + v.toHtmlEscaped() + "</td></tr>"; };
    row(tr("file"), QString::fromStdString(m.path));
    row(tr("format"), QString::fromStdString(m.format) + ", hyper-parameters from " + QString::fromStdString(m.hparams_source));
    row(tr("arch"), QString::fromStdString(m.arch));
    row(tr("layer type"), m.decay ? tr("decaying fast weights") : tr("softmax attention"));
    row(tr("layers × heads"), QString("%1 × %2").arg(m.layers).arg(m.heads));
    row(tr("model dim"), QString::number(m.embed_dim));
    row(tr("D (value dim)"), QString::number(m.head_dim));
    if (m.decay) row(tr("M (key dim)"), QString::number(m.key_dim));
    row(tr("vocabulary"), QString::number(m.vocab));
    row(tr("parameters"), QLocale().toString(static_cast<qlonglong>(m.parameters)));
    row(tr("device"), QString::fromStdString(m.device));
    row(tr("dictionary"), QString::fromStdString(m.dictionary));
    html += "</table><p>" + QString::fromStdString(m.summary).toHtmlEscaped() + "</p>";
  }
  summary_->setHtml(html);
  setWindowTitle(models_.primary ? tr("decayfw analyzer — %1").arg(QString::fromStdString(models_.primary->summary().path))
                                 : tr("decayfw analyzer"));
}

void MainWindow::showError(const QString& title, const QString& message) {
  // Non-modal: the event loop (and any running job) keeps going while the message is up.
  auto* box = new QMessageBox(QMessageBox::Warning, title, message, QMessageBox::Ok, this);
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->open();
  status_->setText(title);
  emit errorShown(message);
}

void MainWindow::addRecent(const QString& path) {
  QSettings s;
  QStringList r = s.value("recent").toStringList();
  r.removeAll(path);
  r.prepend(path);
  while (r.size() > 8) r.removeLast();
  s.setValue("recent", r);
  rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
  recent_->clear();
  for (const QString& p : QSettings().value("recent").toStringList()) {
    recent_->addAction(p, this, [this, p] { openCheckpoint(p); });
  }
  recent_->setEnabled(!recent_->isEmpty());
}

void MainWindow::exportCurrentPlot() {
  for (QDockWidget* d : docks_) {
    auto* v = qobject_cast<View*>(d->widget());
    if (v == nullptr || d->visibleRegion().isEmpty()) continue;
    const auto plots = v->plots();
    if (!plots.empty()) {
      plots.front()->exportWithDialog();
      return;
    }
  }
}

void MainWindow::closeEvent(QCloseEvent* e) {
  QSettings s;
  s.setValue("window/geometry", saveGeometry());
  s.setValue("window/state", saveState());
  const GenerationSettings g = generate_->settings();
  s.setValue("generate/length", static_cast<int>(g.max_new_tokens));
  s.setValue("generate/sample", g.sampling);
  s.setValue("generate/temperature", g.temperature);
  s.setValue("generate/top_k", static_cast<int>(g.top_k));
  s.setValue("generate/top_p", g.top_p);
  s.setValue("generate/seed", static_cast<uint>(g.seed));
  jobs_->cancel();
  QMainWindow::closeEvent(e);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
  if (e->mimeData()->hasUrls()) e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e) {
  const auto urls = e->mimeData()->urls();
  if (urls.isEmpty()) return;
  // Shift while dropping: the comparison model
  openCheckpoint(urls.front().toLocalFile(), (e->modifiers() & Qt::ShiftModifier) != 0);
}

}  // namespace decayfw::app
