// The desktop analyzer driven as a user would, on real checkpoints made by fairseq (the engine
// fixtures): open, generate (the text equals the engine's), gates (the plotted values equal the
// engine's), a benchmark (a point per context length and model), cancelling a long benchmark while
// the event loop stays responsive, bad files (a dialog, no crash), and screenshots of every view.
//
// Runs on the offscreen platform in CTest, and once more under Xvfb with a real window.
#include <QApplication>
#include <QDir>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QFile>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest>

#include <cmath>

#include "engine_bridge.h"
#include "job_runner.h"
#include "main_window.h"
#include "plot_panel.h"

using namespace decayfw::app;

namespace {

QString env_or(const char* name, const QString& fallback) {
  const QByteArray v = qgetenv(name);
  return v.isEmpty() ? fallback : QString::fromLocal8Bit(v);
}

QString fixture(const QString& name) { return env_or("DECAYFW_ENGINE_FIXTURES", ".") + "/" + name; }

}  // namespace

class AnalyzerTest : public QObject {
  Q_OBJECT

 private:
  MainWindow* w_ = nullptr;
  QString checkpoint_, comparison_, text_;

  void waitIdle(int ms = 120000) { QTRY_VERIFY_WITH_TIMEOUT(!w_->jobs().busy(), ms); }
  QMessageBox* visibleMessage() {
    for (QWidget* top : QApplication::topLevelWidgets()) {
      if (auto* box = qobject_cast<QMessageBox*>(top); box && box->isVisible()) return box;
    }
    for (auto* box : w_->findChildren<QMessageBox*>()) {
      if (box->isVisible()) return box;
    }
    return nullptr;
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);  // QSettings of the tests never touch the user's
    EngineSession::set_threads(1);             // leave a core to the UI thread
    checkpoint_ = env_or("DECAYFW_APP_CHECKPOINT", fixture("decay/checkpoint_last.pt"));
    comparison_ = env_or("DECAYFW_APP_COMPARISON", fixture("base/checkpoint_last.pt"));
    text_ = env_or("DECAYFW_APP_TEXT", "a b c d e f g h i j k l m n o p q r s t");
    w_ = new MainWindow();
    w_->resize(1400, 900);
    w_->show();
    QVERIFY(QTest::qWaitForWindowExposed(w_));
  }

  void cleanupTestCase() { delete w_; }

  void opensARealCheckpoint() {
    QSignalSpy loaded(w_, &MainWindow::modelLoaded);
    w_->openCheckpoint(checkpoint_);
    waitIdle();
    QCOMPARE(loaded.count(), 1);
    QVERIFY(w_->models().primary != nullptr);
    QVERIFY2(w_->summaryText().contains("decaying fast weights"), qPrintable(w_->summaryText()));
    w_->openCheckpoint(comparison_, true);
    waitIdle();
    QVERIFY(w_->models().comparison != nullptr);
    QVERIFY(w_->summaryText().contains("softmax attention"));
  }

  void generateMatchesEngine() {
    GenerateView* g = w_->generateView();
    g->promptEdit()->setPlainText(text_.section(' ', 0, 3));
    GenerationSettings s;
    s.max_new_tokens = 8;
    g->setSettings(s);
    g->generate();
    waitIdle();
    const auto engine = EngineSession::open(checkpoint_.toStdString());
    const auto want = engine->generate(text_.section(' ', 0, 3).toStdString(), s, {}, nullptr);
    QCOMPARE(g->outputText(0), QString::fromStdString(want.text));
    const auto base = EngineSession::open(comparison_.toStdString());
    QCOMPARE(g->outputText(1), QString::fromStdString(base->generate(text_.section(' ', 0, 3).toStdString(), s, {}, nullptr).text));
  }

  void gatesPlotTheEnginesValues() {
    GatesView* v = w_->gatesView();
    v->setText(text_);
    v->setLayerHead(1, 2);
    v->compute();
    waitIdle();
    const auto engine = EngineSession::open(checkpoint_.toStdString());
    const HeadView h = engine->head_view(text_.toStdString(), 1, 2);
    QCOMPARE(v->primaryView().T, h.T);
    for (int t = 0; t < h.T; t += 3) {
      for (int d = 0; d < h.D; ++d) QCOMPARE(v->sigmaZPlot()->heatValue(t, d), static_cast<double>(h.sigma_z[t * h.D + d]));
      for (int m = 0; m < h.M; ++m) QCOMPARE(v->sigmaFPlot()->heatValue(t, m), static_cast<double>(h.sigma_f[t * h.M + m]));
    }
    const auto g = h.gate_matrix(h.T - 1);
    for (int d = 0; d < h.D; ++d) {
      for (int m = 0; m < h.M; ++m) QCOMPARE(v->gatePlot()->heatValue(d, m), static_cast<double>(g[d * h.M + m]));
    }
    // the state-decay view got the same head, and the comparison's attention map beside it
    QCOMPARE(w_->decayView()->implied()->heatValue(h.map_tokens - 1, 0), static_cast<double>(h.map[(h.map_tokens - 1) * h.map_tokens]));
    QVERIFY(std::isfinite(w_->decayView()->baseMap()->heatValue(3, 1)));
    QVERIFY(!w_->decayView()->implied()->valueAt(1, 2).isEmpty());  // hover read-out inside the map
  }

  void benchmarkPlotsAPointPerLength() {
    BenchmarkView* b = w_->benchmarkView();
    b->setContexts("16,32,64", 2);
    b->run();
    waitIdle();
    QCOMPARE(b->latencyPlot()->pointCount("decay"), 3);
    QCOMPARE(b->latencyPlot()->pointCount("attention"), 3);
    QCOMPARE(b->memoryPlot()->pointCount("attention"), 3);
    QVERIFY(b->latencyPlot()->csv().count('\n') == 7);  // header + 6 points
  }

  void cancelKeepsTheUiResponsive() {
    BenchmarkView* b = w_->benchmarkView();
    b->setContexts("256,512,1024,2048,3072,4096,6144,8192", 500);
    b->run();
    QVERIFY(w_->jobs().busy());
    QElapsedTimer clock;
    clock.start();
    qint64 last = 0, worst = 0;
    QTimer tick;
    connect(&tick, &QTimer::timeout, [&] {
      worst = std::max(worst, clock.elapsed() - last);
      last = clock.elapsed();
    });
    tick.start(5);
    QTest::qWait(1500);  // the benchmark runs; the event loop must keep ticking
    b->cancel();
    QElapsedTimer stop;
    stop.start();
    waitIdle(20000);
    tick.stop();
    QVERIFY2(worst < 100, qPrintable(QString("event-loop latency %1 ms during the benchmark").arg(worst)));
    QVERIFY2(stop.elapsed() < 10000, qPrintable(QString("cancel took %1 ms").arg(stop.elapsed())));
  }

  void badFilesGiveADialog() {
    QTemporaryDir dir;
    const QString noise = dir.filePath("noise.pt");
    QFile f(noise);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(QByteArray(4096, '\x42'));
    f.close();
    for (const auto& [path, needle] : std::initializer_list<std::pair<QString, QString>>{
             {dir.filePath("missing.pt"), "cannot open"},
             {noise, "not a torch checkpoint"},
             {fixture("evil_zip.pt"), "refusing to run"}}) {
      QSignalSpy errors(w_, &MainWindow::errorShown);
      w_->openCheckpoint(path);
      waitIdle();
      QTRY_COMPARE(errors.count(), 1);
      QVERIFY2(errors.at(0).at(0).toString().contains(needle), qPrintable(errors.at(0).at(0).toString()));
      QMessageBox* box = visibleMessage();
      QVERIFY(box != nullptr);
      box->close();
      QVERIFY(w_->models().primary != nullptr);  // the loaded model is kept
    }
  }

  void screenshots() {
    const QString dir = env_or("DECAYFW_SCREENSHOT_DIR", QDir::currentPath() + "/screenshots");
    QDir().mkpath(dir);
    w_->perplexityView()->setText(text_);
    w_->perplexityView()->compute();
    waitIdle();
    QVERIFY(w_->perplexityView()->lossPlot()->pointCount("decay") > 0);
    w_->benchmarkView()->setContexts(env_or("DECAYFW_APP_CONTEXTS", "64,256,512,1024,2048"), 8);
    w_->benchmarkView()->run();
    waitIdle(600000);
    const std::pair<const char*, QWidget*> views[] = {
        {"generate", w_->generateView()}, {"gates", w_->gatesView()}, {"state_decay", w_->decayView()},
        {"perplexity", w_->perplexityView()}, {"benchmark", w_->benchmarkView()}};
    for (const auto& [name, view] : views) {
      w_->showView(view);
      QTest::qWait(200);
      const QString path = dir + "/" + name + ".png";
      QVERIFY2(w_->grab().save(path), qPrintable(path));
    }
  }
};

QTEST_MAIN(AnalyzerTest)
#include "test_analyzer_app.moc"
